"""device="auto": a GPU that loads, else OpenVINO on the CPU when it is installed, else ONNX Runtime's CPU.

The rule is tested with ONNX Runtime faked (tests/runtime/test_session.py's fake: there is no GPU
here) and OpenVINO's presence decided by each test, so both branches run whether or not openvino
is installed; the tests at the end run the real engines (OpenVINO's skip without the package).
"""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest

from tests.runtime.test_session import CPU, CUDA, NO_OPENVINO, TRT, fake_ort, use
from tseg.runtime import Segmenter, TsegError
from tseg.runtime.model import openvino as ov_engine
from tseg.runtime.model import session as session_module
from tseg.runtime.model.openvino import Availability, OpenVinoSettings
from tseg.runtime.model.session import create_session, session_device

OPENVINO_NOTE = "note: device='auto': running on OpenVINO CPU (f32); device='cpu' runs ONNX Runtime instead"
LIBRARY = "libopenvino.so.2026: cannot open shared object file: No such file or directory"
BROKEN = f"OpenVINO did not import ({LIBRARY})"


class FakeOpenVinoSession:
    """Stands in for OpenVinoSession: records how it was opened."""

    opened: list[dict] = []

    def __init__(self, path, *, threads=None, settings=None):
        FakeOpenVinoSession.opened.append({"path": path, "threads": threads, "settings": settings})
        self.settings = settings or OpenVinoSettings()

    def get_providers(self):
        return [f"OpenVINO CPU ({self.settings.precision})"]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x09 an ONNX header (ir_version 9); the rest is not read by the fakes")
    return path


@pytest.fixture
def notes(caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    return caplog


def with_openvino(monkeypatch, availability: Availability | None = None):
    """OpenVINO as ``availability`` says (default: usable), its session faked."""
    availability = availability or Availability(True)
    asked = []
    monkeypatch.setattr(session_module, "openvino_availability", lambda: asked.append(1) or availability)
    monkeypatch.setattr(session_module, "OpenVinoSession", FakeOpenVinoSession)
    monkeypatch.setattr(session_module, "read_model_file", lambda path: None)
    monkeypatch.setattr(FakeOpenVinoSession, "opened", [])
    return asked


def test_without_a_gpu_openvino_runs_the_model_in_f32_on_the_given_threads(monkeypatch, model_file, capfd, notes):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module, gpu_visible=False)
    with_openvino(monkeypatch)
    session = create_session(model_file, device="auto", threads=2)
    assert FakeOpenVinoSession.opened == [{"path": model_file, "threads": 2, "settings": None}]  # None: f32
    assert session.get_providers() == ["OpenVINO CPU (f32)"] and session_device(session) == "openvino"
    assert calls.events == []  # no ONNX Runtime session was made at all
    [note] = notes.records
    assert (note.levelno, note.message) == (logging.INFO, OPENVINO_NOTE)
    assert capfd.readouterr().out == ""


def test_without_openvino_onnx_runtimes_cpu_provider_runs_it(monkeypatch, model_file, notes):
    module, calls = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=False)  # and no openvino module
    session = create_session(model_file, device="auto", threads=2)
    assert session.get_providers() == [CPU] and session_device(session) == "cpu"
    assert calls.options.intra_op_num_threads == 2
    assert notes.messages == [f"note: device='auto': running on CPUExecutionProvider: {NO_OPENVINO}"]


def test_a_gpu_that_loads_comes_before_openvino(monkeypatch, model_file, notes):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module, gpu_visible=True)
    asked = with_openvino(monkeypatch)
    session = create_session(model_file, device="auto")
    assert session_device(session) == "cuda" and calls.requested == [CUDA, CPU]
    assert asked == [] and FakeOpenVinoSession.opened == []  # OpenVINO was not even looked for
    assert notes.messages == ["note: device='auto': running on CUDAExecutionProvider"]


def test_a_gpu_that_does_not_load_gives_way_to_openvino_with_a_warning(monkeypatch, model_file, notes):
    module, _ = fake_ort(available=[CUDA, CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=True)
    with_openvino(monkeypatch)
    session = create_session(model_file, device="auto")
    assert session_device(session) == "openvino"
    [note] = notes.records
    assert note.levelno == logging.WARNING
    assert note.message.startswith("note: device='auto': running on OpenVINO CPU (f32): the GPU could not be used (")
    assert "libcublasLt.so.13" in note.message and note.message.endswith("; device='cpu' runs ONNX Runtime instead")


def test_a_visible_gpu_without_cuda_in_onnxruntime_is_named_beside_openvino(monkeypatch, model_file, notes):
    module, _ = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=True)
    monkeypatch.setattr(sys, "platform", "linux")
    with_openvino(monkeypatch)
    create_session(model_file, device="auto")
    [note] = notes.messages
    assert note.startswith("note: device='auto': running on OpenVINO CPU (f32): this onnxruntime offers no")
    assert "pip install 'tseg[cuda]'" in note


def test_an_installed_openvino_that_does_not_import_is_a_warning_not_a_silent_switch(monkeypatch, model_file, notes):
    module, _ = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=False)
    with_openvino(monkeypatch, Availability(False, BROKEN))
    session = create_session(model_file, device="auto")
    assert session_device(session) == "cpu" and FakeOpenVinoSession.opened == []
    [note] = notes.records
    assert (note.levelno, note.message) == (logging.WARNING, f"note: device='auto': running on {CPU}: {BROKEN}")


def test_a_model_openvino_refuses_under_auto_is_an_error_naming_the_other_engine(monkeypatch, model_file):
    module, calls = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=False)
    with_openvino(monkeypatch)

    def refuses(path, **_):
        raise TsegError(f"{path} is not a model OpenVINO can run: No conversion rule found for operations: x.Op")

    monkeypatch.setattr(session_module, "OpenVinoSession", refuses)
    with pytest.raises(TsegError) as err:
        create_session(model_file, device="auto")
    assert str(err.value).endswith(
        "No conversion rule found for operations: x.Op (device='auto' chose OpenVINO; device='cpu' runs ONNX"
        " Runtime instead)"
    )
    assert calls.events == []  # never a quiet switch to ONNX Runtime


def test_auto_takes_no_openvino_settings(model_file):
    """bf16 only ever comes with device='openvino': auto never changes a model's precision."""
    with pytest.raises(TsegError, match="apply only to device='openvino', got device='auto'"):
        create_session(model_file, device="auto", openvino=OpenVinoSettings(bf16=True))


def test_the_cli_note_names_its_flags(monkeypatch, model_file):
    import click
    from click.testing import CliRunner

    from tseg.runtime.cli_errors import one_line_errors

    @click.command()
    @click.option("--device", default="auto")
    @one_line_errors
    def command(device):
        create_session(model_file, device=device)

    module, _ = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=False)
    with_openvino(monkeypatch)
    result = CliRunner().invoke(command, [])
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == (
        "note: --device auto: running on OpenVINO CPU (f32); --device cpu runs ONNX Runtime instead\n"
    )
    assert CliRunner().invoke(command, ["--device", "cpu"]).stderr == ""  # an explicit device: no note


# ---------------------------------------------------------------- is OpenVINO there?


def test_availability_without_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert ov_engine.openvino_availability() == Availability(False, NO_OPENVINO, installed=False)


def test_availability_of_a_package_that_does_not_import(monkeypatch):
    def broken():
        raise ImportError(LIBRARY)

    monkeypatch.setattr(ov_engine, "_openvino_installed", lambda: True)
    monkeypatch.setattr(ov_engine, "_import_quietly", broken)
    assert ov_engine.openvino_availability() == Availability(False, BROKEN)
    with pytest.raises(TsegError) as err:  # device="openvino" names the reason and what to install
        ov_engine.import_openvino()
    assert str(err.value) == (
        f"device='openvino' needs OpenVINO Runtime, which is installed but does not import ({LIBRARY}):"
        " pip install 'tseg[openvino]'"
    )


@pytest.mark.parametrize(
    ("devices", "usable"), [(["CPU"], True), (["GPU", "CPU"], True), (["GPU"], False), ([], False)]
)
def test_availability_needs_a_cpu_device(monkeypatch, devices, usable):
    fake = types.SimpleNamespace(Core=lambda: types.SimpleNamespace(available_devices=devices))
    monkeypatch.setattr(ov_engine, "_openvino_installed", lambda: True)
    monkeypatch.setattr(ov_engine, "_import_quietly", lambda: fake)
    found = ov_engine.openvino_availability()
    assert found.usable == usable and found.installed
    assert usable or found.reason.startswith("OpenVINO lists no CPU device")


# ---------------------------------------------------------------- the real engines


def test_with_openvino_hidden_a_segmenter_runs_on_onnx_runtime(colour_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    seg = Segmenter(colour_onnx, threads=1)
    assert seg.device == "cpu" and seg.providers == [CPU]
    assert Segmenter(colour_onnx, device="cpu").device == "cpu"


def test_with_openvino_installed_a_segmenter_runs_on_it_in_f32_with_onnx_runtimes_labels(colour_onnx, photo_dir):
    if not ov_engine.openvino_availability().usable:
        pytest.skip("OpenVINO is not installed here")
    openvino = ov_engine.import_openvino()  # telemetry off, as tseg imports it
    seg = Segmenter(colour_onnx, threads=1)
    assert seg.device == "openvino" and seg.providers == ["OpenVINO CPU (f32)"]
    compiled = seg.session.compiled
    assert compiled.get_property("INFERENCE_PRECISION_HINT") == openvino.Type.f32  # even on a CPU with bf16
    assert int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    reference = Segmenter(colour_onnx, device="cpu")
    for path in sorted(photo_dir.rglob("*.png")):
        np.testing.assert_array_equal(seg.predict(path).labels, reference.predict(path).labels)


def test_a_runs_result_names_the_engine_that_ran(colour_onnx, photo_dir, tmp_path, monkeypatch):
    from tseg.runtime.infer.run import InferSettings, infer_paths

    for device in ("cpu", "auto"):
        settings = InferSettings(model=colour_onnx, out=tmp_path / device, device=device, progress=False)
        result = infer_paths([photo_dir], settings=settings)
        assert result.providers == tuple(Segmenter(colour_onnx, device=device).providers)
    monkeypatch.setitem(sys.modules, "openvino", None)  # auto without OpenVINO: ONNX Runtime
    settings = InferSettings(model=colour_onnx, out=tmp_path / "hidden", progress=False)
    assert infer_paths([photo_dir], settings=settings).providers == (CPU,)
