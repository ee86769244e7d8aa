"""Library errors name Python parameters; the CLIs name their flags for the same mistake.

A Python caller reads ``model file not found`` and ``device: unknown device``, with the
parameter on ``TsegError.parameter``; tseg-infer says ``--model`` and ``--device`` for the
same mistake, translated in one place (:func:`tseg.runtime.cli_errors.cli_message`).
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from tseg.runtime import Segmenter, TsegError
from tseg.runtime.data.submission import SubmissionWriter
from tseg.runtime.infer.cli import main as infer_cli
from tseg.runtime.infer.outputs import plan_targets
from tseg.runtime.model.session import check_threads, requested_providers


def _python_error(call) -> TsegError:
    with pytest.raises(TsegError) as caught:
        call()
    text = str(caught.value)
    assert "--" not in text and "\n" not in text, text
    return caught.value


def _cli_error(*args) -> str:
    result = CliRunner().invoke(infer_cli, [str(arg) for arg in args])
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith("Error: "), result.stderr
    return result.stderr


def test_a_missing_model_names_model_in_python_and_the_flag_in_the_cli(tmp_path, photo_dir):
    err = _python_error(lambda: Segmenter(model=tmp_path / "missing.onnx"))
    assert str(err).startswith("model file not found: ") and err.parameter == "model"
    line = _cli_error(photo_dir, "--model", tmp_path / "missing.onnx", "--out", tmp_path / "out")
    assert line.startswith("Error: --model file not found: ")


def test_a_file_that_is_not_a_model_names_model(tmp_path, photo_dir):
    fake = tmp_path / "fake.onnx"
    fake.write_text("not a model")
    err = _python_error(lambda: Segmenter(model=fake))
    assert str(err).startswith(f"model {fake} is not an ONNX model") and err.parameter == "model"
    line = _cli_error(photo_dir, "--model", fake, "--out", tmp_path / "out")
    assert line.startswith(f"Error: --model {fake} is not an ONNX model")


def test_an_unknown_device_names_device(colour_onnx):
    err = _python_error(lambda: Segmenter(model=colour_onnx, device="bogus"))
    assert str(err).startswith("device: unknown device 'bogus'; valid: auto, cpu, cuda") and err.parameter == "device"
    err = _python_error(lambda: requested_providers("cuda", ["CPUExecutionProvider"]))
    assert str(err).startswith("device='cuda' needs CUDAExecutionProvider") and err.parameter == "device"


def test_wrong_settings_of_the_segmenter_name_their_parameter(colour_onnx):
    for kwargs, start in [
        ({"tta": "hflip"}, "tta: need a TtaSettings or None, got str"),
        ({"crf": {}}, "crf: need a CrfParams or None, got dict"),
        ({"batch_size": 0}, "batch_size: need an integer in 1..1024, got 0"),
        ({"threads": 0}, "threads: need an integer in 1.."),
    ]:
        err = _python_error(lambda kwargs=kwargs: Segmenter(model=colour_onnx, **kwargs))
        assert str(err).startswith(start), str(err)
    assert _python_error(lambda: check_threads(0)).parameter == "threads"


def test_a_submission_that_is_a_folder_names_the_parameter(tmp_path, colour_onnx, tiny_coco_dir):
    err = _python_error(lambda: SubmissionWriter(tmp_path))
    assert str(err).startswith(f"path {tmp_path} is a folder: need a file name") and err.parameter == "path"
    err = _python_error(lambda: SubmissionWriter(tmp_path, what="submission"))
    assert str(err).startswith(f"submission {tmp_path} is a folder") and err.parameter == "submission"
    (tmp_path / "sub").mkdir()
    line = _cli_error("--coco", tiny_coco_dir / "val.json", "--model", colour_onnx, "--out", tmp_path / "out",
                      "--submission", tmp_path / "sub")
    assert line.startswith(f"Error: --submission {tmp_path / 'sub'} is a folder: need a file name"), line


def test_an_output_that_escapes_out_names_out(tmp_path, colour_onnx, photo_dir):
    err = _python_error(lambda: plan_targets(tmp_path / "out", [("x.jpg", tmp_path / "elsewhere" / "x.jpg")]))
    assert f"would lie outside out={str(tmp_path / 'out')!r}" in str(err)
    line = _cli_error(photo_dir, "--model", colour_onnx, "--out", photo_dir / "labels")
    assert line.startswith(f"Error: --out {photo_dir / 'labels'} lies in the input folder {photo_dir} (PATHS)")


def test_segmenting_photos_through_the_cli_never_imports_pycocotools(colour_onnx, photo_dir, tmp_path):
    """pycocotools is imported only when COCO data is read: not on tseg-infer PATHS' import path."""
    code = (
        "import sys; from tseg.runtime.infer.cli import main\n"
        f"args = [{str(photo_dir)!r}, '--model', {str(colour_onnx)!r}, '--out', {str(tmp_path / 'out')!r}, '-q']\n"
        "try:\n"
        "    main(args)\n"
        "except SystemExit as stop:\n"
        "    assert not stop.code, stop.code\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pycocotools', 'torch')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]" and any((tmp_path / "out").iterdir())
