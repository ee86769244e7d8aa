"""Where the runtime's CRF runs (issue 21): CrfParams(device=...) and tseg-infer --crf-device.

"auto" is the GPU when the model runs on CUDA and the CUDA CRF can run, else the CPU
(tseg/runtime/segment/crf_device.py). There is no GPU here: the model's device is faked
(Segmenter.device from a patched ``session_device``) and so is the CUDA CRF's availability,
both ways; runs that would need the real CUDA kernels record the settings instead
(``CrfParams.refine_logits`` patched). ``--crf-device cuda`` runs for real: with numba-cuda
installed and no GPU, or without numba-cuda, it is one line naming what to install. The CUDA
CRF itself runs under the simulator in tests/runtime/test_crf_cuda.py.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.onnx_models import write_colour_model
from tests.runtime.test_crf_cuda import cuda_modules_after
from tseg.runtime.crf.cuda import device as cuda_device
from tseg.runtime.errors import HELD_NOTE, TsegError
from tseg.runtime.infer.cli import main as infer_cli
from tseg.runtime.scores import labels_from_scores
from tseg.runtime.segment import segmenter as segmenter_module
from tseg.runtime.segment.crf_device import CRF_AUTO_NOTE, resolve_crf_device
from tseg.runtime.segment.refine import CRF_FILE, CrfParams
from tseg.runtime.segment.segmenter import Segmenter

NO_PACKAGE = "NVIDIA's numba-cuda package, which is not installed: pip install 'tseg[cuda]'"
CLI_NOTE = CRF_AUTO_NOTE  # the CRF's words are the same in Python and in tseg-infer
REAL_PROBLEM, REAL_FIND_SPEC = cuda_device.cuda_problem, importlib.util.find_spec


@pytest.fixture
def notes(caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    return caplog


def crf_notes(caplog) -> list[tuple[int, str, bool]]:
    """(level, message, held) of the CRF's notes."""
    return [(r.levelno, r.message, getattr(r, HELD_NOTE, False)) for r in caplog.records
            if r.message.startswith(CRF_AUTO_NOTE)]


def cuda_crf(monkeypatch, *, usable: bool) -> list[int]:
    """The CUDA CRF usable (the check faked) or not (numba-cuda hidden: the real check says so);
    returns a list that grows each time the check runs."""
    asked: list[int] = []
    if usable:
        monkeypatch.setattr(cuda_device, "cuda_problem", lambda: asked.append(1) or "")
    else:
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a: None if name == "numba_cuda" else REAL_FIND_SPEC(name, *a))
        monkeypatch.setattr(cuda_device, "cuda_problem", lambda: asked.append(1) or REAL_PROBLEM())
    return asked


def model_on(monkeypatch, device: str) -> None:
    """Segmenter.device says ``device`` (the model still runs on ONNX Runtime's CPU provider)."""
    monkeypatch.setattr(segmenter_module, "session_device", lambda session: device)


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize("model_device", ["cuda", "tensorrt"])
def test_auto_takes_the_gpu_for_a_gpu_model_when_the_cuda_crf_can_run(monkeypatch, notes, model_device):
    asked = cuda_crf(monkeypatch, usable=True)
    assert resolve_crf_device("auto", model_device=model_device) == "cuda" and asked == [1]
    assert crf_notes(notes) == [(logging.INFO, f"{CRF_AUTO_NOTE} the GPU (CUDA), as the model does"
                                               f" (device {model_device!r})", True)]


def test_auto_falls_back_to_the_cpu_with_a_warning_naming_the_install(monkeypatch, notes):
    cuda_crf(monkeypatch, usable=False)
    assert resolve_crf_device("auto", model_device="cuda") == "cpu"
    assert crf_notes(notes) == [(logging.WARNING, f"{CRF_AUTO_NOTE} the CPU although the model runs on the GPU"
                                                  f" (device 'cuda'): the CUDA CRF needs {NO_PACKAGE}", False)]


@pytest.mark.parametrize("model_device", ["cpu", "openvino"])
def test_auto_keeps_a_cpu_models_crf_on_the_cpu_without_asking_for_cuda(monkeypatch, notes, model_device):
    asked = cuda_crf(monkeypatch, usable=True)
    assert resolve_crf_device("auto", model_device=model_device) == "cpu" and asked == []
    assert crf_notes(notes) == [(logging.INFO, f"{CRF_AUTO_NOTE} the CPU, as the model does"
                                               f" (device {model_device!r})", True)]


def test_explicit_devices_and_settings_without_a_model_say_nothing(monkeypatch, notes):
    asked = cuda_crf(monkeypatch, usable=True)
    assert resolve_crf_device("cpu", model_device="cuda") == "cpu" and asked == []
    assert resolve_crf_device("auto", model_device=None) == "cpu" and asked == []
    assert resolve_crf_device("cuda", model_device="cpu") == "cuda" and asked == [1]  # checked, then taken
    assert crf_notes(notes) == []


def test_explicit_cuda_that_cannot_run_is_one_line_naming_the_install(monkeypatch):
    cuda_crf(monkeypatch, usable=False)
    with pytest.raises(TsegError) as err:
        resolve_crf_device("cuda", model_device="cuda")
    assert str(err.value) == (f"CRF device 'cuda' needs {NO_PACKAGE}; or run the CRF on the CPU"
                              " (CRF device 'cpu')")


@pytest.mark.parametrize("device", ["gpu", "CUDA", None, 0])
def test_crf_params_refuse_an_unknown_device(device):
    with pytest.raises(TsegError, match="CRF device must be one of 'auto', 'cpu', 'cuda'"):
        CrfParams(device=device)


def test_crf_json_holds_no_device(tmp_path):
    path = tmp_path / CRF_FILE
    CrfParams(iterations=2, device="cpu").save(path)
    assert "device" not in json.loads(path.read_text())
    assert CrfParams.load(path) == CrfParams(iterations=2)  # device "auto", the default
    path.write_text(json.dumps({"iterations": 2, "device": "cuda"}))
    with pytest.raises(TsegError, match="the CRF's device is not read from this file.*--crf-device"):
        CrfParams.load(path)


# ------------------------------------------------------------------ the Segmenter


def test_the_segmenter_resolves_auto_for_its_model_both_ways(monkeypatch, colour_onnx, notes):
    model_on(monkeypatch, "cuda")
    cuda_crf(monkeypatch, usable=True)
    assert Segmenter(colour_onnx, device="cpu", crf=CrfParams(iterations=2)).crf == CrfParams(iterations=2,
                                                                                              device="cuda")
    cuda_crf(monkeypatch, usable=False)
    assert Segmenter(colour_onnx, device="cpu", crf=CrfParams()).crf.device == "cpu"
    assert [level for level, _, _ in crf_notes(notes)] == [logging.INFO, logging.WARNING]


def test_the_segmenter_refuses_cuda_that_cannot_run_before_the_model_loads(monkeypatch, colour_onnx):
    cuda_crf(monkeypatch, usable=False)
    monkeypatch.setattr(segmenter_module, "create_session", lambda *a, **k: pytest.fail("the model loaded"))
    with pytest.raises(TsegError, match=r"CRF device 'cuda' needs .*pip install 'tseg\[cuda\]'"):
        Segmenter(colour_onnx, device="cpu", crf=CrfParams(device="cuda"))


def test_a_cpu_model_with_auto_loads_no_cuda_module(tmp_path):
    model = write_colour_model(tmp_path / "colour.onnx")
    assert cuda_modules_after(
        "import numpy as np\n"
        "from tseg.runtime import CrfParams, Segmenter\n"
        f"seg = Segmenter({str(model)!r}, device='cpu', crf=CrfParams(iterations=1))\n"
        "seg.predict(np.zeros((16, 16, 3), np.uint8))\n"
        "assert seg.crf.device == 'cpu'") == []


# ------------------------------------------------------------------ tseg-infer --crf-device


def invoke(*args):
    return CliRunner().invoke(infer_cli, [*map(str, args), "-q"])


def record_refine(monkeypatch) -> list[CrfParams]:
    """CrfParams.refine_logits replaced: records the settings it ran with, returns the plain labels."""
    seen: list[CrfParams] = []

    def refine_logits(params, logits, image, *, threads=None):
        seen.append(params)
        return labels_from_scores(logits, image.shape[:2])

    monkeypatch.setattr(CrfParams, "refine_logits", refine_logits)
    return seen


def png_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_crf_device_cpu_writes_the_defaults_labels_on_a_cpu(colour_onnx, photo_dir, tmp_path):
    default = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "auto", "--crf")
    cpu = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "cpu", "--crf", "--crf-device", "cpu")
    assert default.exit_code == 0 and cpu.exit_code == 0, (default.output, cpu.output)
    assert png_bytes(tmp_path / "auto") == png_bytes(tmp_path / "cpu") and len(png_bytes(tmp_path / "cpu")) == 3
    [note] = [line for line in default.stderr.splitlines() if line.startswith(CLI_NOTE)]
    assert note.startswith(f"{CLI_NOTE} the CPU, as the model does (device '")  # 'cpu' or 'openvino'
    assert not any(line.startswith(CLI_NOTE) for line in cpu.stderr.splitlines())  # explicit: no note


def test_crf_device_auto_runs_the_gpu_crf_for_a_gpu_model(monkeypatch, colour_onnx, photo_dir, tmp_path):
    model_on(monkeypatch, "cuda")
    cuda_crf(monkeypatch, usable=True)
    seen = record_refine(monkeypatch)
    result = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "out", "--crf", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert seen == [CrfParams(device="cuda")] * 3
    assert result.stderr.splitlines() == [f"{CLI_NOTE} the GPU (CUDA), as the model does (device 'cuda')"]


def test_crf_device_auto_falls_back_for_a_gpu_model_and_warns(monkeypatch, colour_onnx, photo_dir, tmp_path):
    model_on(monkeypatch, "tensorrt")
    cuda_crf(monkeypatch, usable=False)
    result = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "auto", "--crf", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [f"{CLI_NOTE} the CPU although the model runs on the GPU (device"
                                          f" 'tensorrt'): the CUDA CRF needs {NO_PACKAGE}"]
    cpu = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "cpu", "--crf", "--device", "cpu",
                 "--crf-device", "cpu")
    assert cpu.exit_code == 0 and png_bytes(tmp_path / "auto") == png_bytes(tmp_path / "cpu")


def test_crf_device_reaches_crf_tune(monkeypatch, tiny_coco_dir, tmp_path):
    model = write_colour_model(tmp_path / "m" / "colour.onnx")
    model_on(monkeypatch, "cuda")
    cuda_crf(monkeypatch, usable=True)
    seen = record_refine(monkeypatch)
    result = invoke("--coco", tiny_coco_dir / "val.json", "--model", model, "--crf-tune", "--tune-images", "1",
                    "--device", "cpu", "--crf-device", "auto")
    assert result.exit_code == 0, result.output
    assert seen and {params.device for params in seen} == {"cuda"}
    assert "device" not in json.loads((model.parent / CRF_FILE).read_text())


def test_crf_device_cuda_without_a_gpu_is_one_line_before_any_work(monkeypatch, colour_onnx, photo_dir, tmp_path):
    """Real: numba-cuda is installed here and there is no GPU (or numba-cuda is missing): one line, exit 1."""
    if not cuda_device.cuda_problem():
        pytest.skip("the CUDA CRF can run here")
    read = []
    monkeypatch.setattr("tseg.runtime.infer.run.read_image", lambda *a, **k: read.append(a))
    result = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "out", "--crf", "--crf-device", "cuda")
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: CRF device 'cuda' needs ") and "pip install 'tseg[cuda]'" in line, line
    assert read == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crf-device", "cpu"], "Error: --crf-device needs --crf (or --crf-tune)"),
        (["--crf-device", "auto"], "Error: --crf-device needs --crf (or --crf-tune)"),
        (["--crf", "--crf-device", "bogus"], "Error: Invalid value for '--crf-device': 'bogus' is not one of"),
    ],
    ids=["cpu-without-crf", "auto-without-crf", "unknown"],
)
def test_crf_device_without_crf_or_unknown_is_one_line(colour_onnx, photo_dir, tmp_path, args, message):
    result = invoke(photo_dir, "--model", colour_onnx, "--out", tmp_path / "out", *args)
    assert result.exit_code == 1 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(message), line
    assert not (tmp_path / "out").exists()


def test_eval_json_names_the_crf_device_that_ran(colour_onnx, tiny_coco_dir, tmp_path):
    result = invoke("--coco", tiny_coco_dir / "val.json", "--model", colour_onnx, "--out", tmp_path / "out",
                    "--eval", "--crf", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["crf"]["device"] == "cpu"  # auto's choice
