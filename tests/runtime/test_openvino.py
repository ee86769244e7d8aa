"""device="openvino": OpenVINO Runtime reads tseg's .onnx files, in f32 unless bf16 is asked for."""

from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from tseg.runtime import OpenVinoSettings, Segmenter, TsegError
from tseg.runtime.model import openvino as ov_engine
from tseg.runtime.model.session import create_session


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Compiled models go to tseg's cache folder: a private one per test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def batch(n: int = 2, size: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-2, 2, (n, 3, size, size + 8)).astype(np.float32)


def test_f32_gives_onnx_runtimes_scores_and_labels(colour_onnx, tmp_path):
    ort = Segmenter(colour_onnx, device="cpu", threads=1)
    ov = Segmenter(colour_onnx, device="openvino", threads=1)
    assert ov.providers == ["OpenVINO CPU (f32)"]
    assert ov.classes == ort.classes and ov.metadata == ort.metadata
    x = batch()
    np.testing.assert_allclose(ov.run_batch(x), ort.run_batch(x), rtol=1e-5, atol=1e-5)
    assert (tmp_path / "cache" / "tseg" / "openvino").is_dir()


def test_predict_labels_equal_onnx_runtimes(colour_onnx, photo_dir):
    ort = Segmenter(colour_onnx, device="cpu")
    ov = Segmenter(colour_onnx, device="openvino")
    for path in sorted(photo_dir.rglob("*.png")):
        np.testing.assert_array_equal(ov.predict(path).labels, ort.predict(path).labels)


def test_bf16_is_asked_for_and_named(colour_onnx):
    ov = Segmenter(colour_onnx, device="openvino", openvino=OpenVinoSettings(bf16=True))
    assert ov.providers == ["OpenVINO CPU (bf16)"]
    assert np.isfinite(ov.run_batch(batch())).all()


def test_bf16_on_a_cpu_without_it_is_one_line(colour_onnx, monkeypatch):
    import openvino

    real = openvino.Core.get_property

    def without_bf16(core, device, name):
        value = real(core, device, name)
        return [c for c in value if c != "BF16"] if name == "OPTIMIZATION_CAPABILITIES" else value

    monkeypatch.setattr(openvino.Core, "get_property", without_bf16)
    with pytest.raises(TsegError, match="no bfloat16") as err:
        Segmenter(colour_onnx, device="openvino", openvino=OpenVinoSettings(bf16=True))
    assert err.value.parameter == "bf16"


def test_runs_from_several_threads_equal_serial_runs(colour_onnx):
    ov = Segmenter(colour_onnx, device="openvino", threads=1)
    inputs = [batch(seed=s) for s in range(6)]
    expected = [ov.run_batch(x) for x in inputs]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        got[i] = ov.run_batch(inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, want in enumerate(expected):
        np.testing.assert_array_equal(got[i], want)


def test_without_openvino_installed_the_error_names_the_extra(colour_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(TsegError, match=r"pip install 'tseg\[openvino\]'") as err:
        Segmenter(colour_onnx, device="openvino")
    assert err.value.parameter == "device"


@pytest.mark.parametrize("settings, match", [
    (dict(bf16="yes"), "bf16: need True or False"),
    (dict(cache_dir=3), "cache_dir: need a folder path"),
])  # fmt: skip
def test_bad_settings_are_named(settings, match):
    with pytest.raises(TsegError, match=match):
        OpenVinoSettings(**settings)


def test_settings_with_another_device_are_refused(colour_onnx):
    with pytest.raises(TsegError, match="apply only to device='openvino'"):
        create_session(colour_onnx, device="cpu", openvino=OpenVinoSettings(bf16=True))


def test_a_file_openvino_cannot_read_is_one_line(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07" + b"not a model" * 10)
    with pytest.raises(TsegError) as err:
        ov_engine.OpenVinoSession(bad)
    assert "\n" not in str(err.value)


def test_an_unwritable_cache_folder_is_one_line(colour_onnx, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(TsegError, match="cannot create the OpenVINO cache folder"):
        Segmenter(colour_onnx, device="openvino", openvino=OpenVinoSettings(cache_dir=blocker / "sub"))


def test_tseg_infer_device_openvino_writes_onnx_runtimes_labels(colour_onnx, photo_dir, tmp_path):
    from click.testing import CliRunner

    from tseg.runtime.infer.cli import main

    outs = {}
    for device in ("cpu", "openvino"):
        outs[device] = tmp_path / device
        result = CliRunner().invoke(
            main, [str(photo_dir), "--model", str(colour_onnx), "--out", str(outs[device]), "--device", device, "-q"]
        )
        assert result.exit_code == 0, result.output
    written = sorted(p.relative_to(outs["cpu"]) for p in outs["cpu"].rglob("*.png"))
    assert written == sorted(p.relative_to(outs["openvino"]) for p in outs["openvino"].rglob("*.png"))
    for name in written:
        assert (outs["cpu"] / name).read_bytes() == (outs["openvino"] / name).read_bytes()


def test_tseg_infer_bf16_needs_device_openvino(colour_onnx, photo_dir, tmp_path):
    from click.testing import CliRunner

    from tseg.runtime.infer.cli import main

    result = CliRunner().invoke(
        main, [str(photo_dir), "--model", str(colour_onnx), "--out", str(tmp_path / "o"), "--bf16", "-q"]
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        "Error: --bf16 needs --device openvino (it sets OpenVINO's precision), got --device auto"
    ]
    assert not (tmp_path / "o").exists()


def test_a_model_openvino_refuses_leaves_no_cache_folder(tmp_path):
    from tests.hardening.onnx_files import tail_model_bytes

    model = tmp_path / "mystery.onnx"
    model.write_bytes(tail_model_bytes("unknown-op"))
    with pytest.raises(TsegError, match="No conversion rule found for operations: tseg.harness.Mystery") as err:
        Segmenter(model, device="openvino")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_openvinos_telemetry_stays_off_and_nothing_but_the_cache_lands_in_home(colour_onnx, tmp_path):
    import os
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    code = (
        "import sys\n"
        "from tseg.runtime import Segmenter\n"
        f"Segmenter({str(colour_onnx)!r}, device='openvino')\n"
        "assert 'openvino_telemetry' not in sys.modules\n"
        "import openvino_telemetry\n"  # the user's own import still gets the package
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    done = subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(home)}, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert written and all(name.startswith(".cache/tseg/openvino/") for name in written), written
