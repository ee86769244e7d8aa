"""Provider selection: an explicit GPU device loads or fails in one line; auto's GPU step falls back.

There is no GPU here, so ONNX Runtime is replaced by a fake module that offers
providers, "loads" some of them and, like the real one, logs provider failures
from native code (file descriptor 2) and prints TensorRT's fallback banner to stdout.
The auto tests here run as on a machine without OpenVINO (``use``); the rest of auto's
rule, OpenVINO included, is tests/runtime/test_auto_device.py.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import types

import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.model import capture
from tseg.runtime.model import session as session_module
from tseg.runtime.model.session import create_session, load_failure_reason, requested_providers, set_engine_logging

CUDA, TRT, CPU = "CUDAExecutionProvider", "TensorrtExecutionProvider", "CPUExecutionProvider"
# What onnxruntime-gpu 1.31 logged on this machine when CUDA could not load (colours included).
REAL_LOG = (
    "\x1b[1;31m2026-11-30 20:19:57.9 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] "
    "/onnxruntime_src/onnxruntime/core/session/provider_bridge_ort.cc:2043 onnxruntime::Provider& "
    "onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to load library "
    ".../libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file: "
    "No such file or directory\n\x1b[m\n\x1b[0;93m2026-11-30 20:19:57.9 [W:onnxruntime:Default, "
    "onnxruntime_pybind_state.cc:1295 CreateExecutionProviderFactoryInstance] Failed to create "
    "CUDAExecutionProvider. Require cuDNN 9.* and CUDA 13.*. Please install all dependencies as mentioned "
    "in the GPU requirements page, make sure they're in the PATH, and that your GPU is supported.\x1b[m\n"
)


def fake_ort(*, available, loads, fails_with=None, preload="ok"):
    """A stand-in for the onnxruntime module.

    Args:
        available: what get_available_providers() offers.
        loads: the providers a session really gets (of those requested).
        fails_with: an exception InferenceSession raises instead.
        preload: "ok" (preload_dlls prints nothing), "prints" (it prints a failure to
            stdout, as the real one does), "raises", or None (an ONNX Runtime < 1.21 without it).
    """
    calls = types.SimpleNamespace(severity=[], requested=None, events=[])

    class SessionOptions:
        def __init__(self):
            self.log_severity_level = 2
            self.intra_op_num_threads = 0
            self.config = {}

        def add_session_config_entry(self, key, value):
            self.config[key] = value

    class InferenceSession:
        def __init__(self, path, sess_options, providers):
            calls.events.append("session")
            calls.requested = list(providers)
            calls.options = sess_options
            if fails_with is not None:
                raise fails_with
            self._used = [p for p in providers if p in loads]
            if providers[0] != CPU and providers[0] not in loads:
                os.write(2, REAL_LOG.encode())  # native code logs straight to the descriptor
                if providers[0] == TRT:
                    print("*************** EP Error ***************\nFalling back and retrying.")

        def get_providers(self):
            return self._used

    module = types.ModuleType("onnxruntime")
    module.get_available_providers = lambda: list(available)
    module.set_default_logger_severity = calls.severity.append
    module.SessionOptions = SessionOptions
    module.InferenceSession = InferenceSession
    if preload is not None:

        def preload_dlls():
            calls.events.append("preload")
            if preload == "prints":
                print("Failed to load libcublasLt.so.13: libcublasLt.so.13: cannot open shared object file")
            if preload == "raises":
                raise RuntimeError("Invalid parameter of directory=None. The directory does not exist!")

        module.preload_dlls = preload_dlls
    return module, calls


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x09 an ONNX header (ir_version 9); the rest is not read by the fake")
    return path


NO_OPENVINO = "OpenVINO is not installed (pip install 'tseg[openvino]' to use it)"


def use(monkeypatch, module, *, gpu_visible=True):
    """The fake ONNX Runtime, a GPU visible or not, and no OpenVINO (as a base install has none)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", module)
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError, find_spec -> None
    monkeypatch.setattr(session_module, "_nvidia_gpu_visible", lambda: gpu_visible)
    monkeypatch.setattr(session_module, "_preloaded", [])  # preload_dlls runs once per process


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_an_explicit_gpu_device_that_is_not_offered_is_an_error(monkeypatch, model_file, capfd, device):
    module, calls = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module)
    with pytest.raises(TsegError) as caught:
        create_session(model_file, device=device)
    text = str(caught.value)
    assert text.startswith(f"device={device!r} needs") and "offers only CPUExecutionProvider" in text
    assert caught.value.parameter == "device" and "--" not in text
    assert "pip install 'tseg[cuda]'" in text and "onnxruntime-gpu" in text and "\n" not in text
    assert ("pip install tensorrt" in text) == (device == "tensorrt")
    assert calls.requested is None and calls.events == []  # refused before trying (nothing preloaded)
    assert capfd.readouterr() == ("", "")


def test_an_explicit_cuda_that_does_not_load_is_an_error_with_the_reason(monkeypatch, model_file, capfd):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CPU])
    use(monkeypatch, module)
    with pytest.raises(TsegError) as caught:
        create_session(model_file, device="cuda")
    text = str(caught.value)
    assert calls.requested == [CUDA, CPU]
    assert "CUDAExecutionProvider is installed but could not be loaded" in text
    assert "libcublasLt.so.13: cannot open shared object file" in text and "Require cuDNN 9.* and CUDA 13.*" in text
    assert "cuDNN 9" in text and "device='cpu'" in text and "--" not in text and "\n" not in text
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # ONNX Runtime's own log lines were kept off the terminal


def test_an_explicit_tensorrt_that_falls_back_to_cuda_is_an_error(monkeypatch, model_file, capfd):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module)
    with pytest.raises(TsegError, match="TensorrtExecutionProvider is installed but could not be loaded.*TensorRT"):
        create_session(model_file, device="tensorrt")
    assert calls.requested == [TRT, CUDA, CPU]
    assert capfd.readouterr() == ("", "")  # the "EP Error" banner did not reach stdout


@pytest.mark.parametrize(("device", "loads"), [("cuda", [CUDA, CPU]), ("tensorrt", [TRT, CUDA, CPU]), ("cpu", [CPU])])
def test_an_explicit_device_that_loads_is_used_quietly(monkeypatch, model_file, capfd, device, loads):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=loads)
    use(monkeypatch, module)
    session = create_session(model_file, device=device, threads=2)
    assert session.get_providers()[0] == loads[0]
    assert calls.options.intra_op_num_threads == 2
    assert calls.options.log_severity_level == 4  # ONNX Runtime's own errors stay off stderr
    assert calls.severity and calls.severity[-1] == 4  # the default logger is quiet again afterwards
    assert capfd.readouterr() == ("", "")


def test_verbose_mode_lets_onnx_runtimes_warnings_through(monkeypatch, model_file):
    module, calls = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module)
    set_engine_logging(verbose=True)
    try:
        create_session(model_file, device="cpu")
        assert calls.options.log_severity_level == 2 and calls.severity[-1] == 2
    finally:
        set_engine_logging(verbose=False)
    create_session(model_file, device="cpu")
    assert calls.options.log_severity_level == 4


@pytest.mark.parametrize("threads", [2.5, 0, -1, True, "2", 10**6])
def test_threads_of_the_wrong_kind_are_one_line_naming_the_parameter(model_file, threads):
    with pytest.raises(TsegError, match=r"^threads: need an integer in 1\.\.\d+"):
        create_session(model_file, device="cpu", threads=threads)


def test_auto_uses_cuda_when_it_loads_and_says_so(monkeypatch, model_file, capfd, caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module, gpu_visible=True)
    create_session(model_file, device="auto")
    assert calls.requested == [CUDA, CPU]
    assert capfd.readouterr().out == "" and caplog.messages == ["note: device='auto': running on CUDAExecutionProvider"]


def test_auto_falls_back_to_the_cpu_when_cuda_does_not_load(monkeypatch, model_file, capfd, caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    module, calls = fake_ort(available=[CUDA, CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=True)
    session = create_session(model_file, device="auto")
    assert session.get_providers() == [CPU]
    assert calls.events == ["preload", "session"]  # the session ONNX Runtime fell back to is the one kept
    assert capfd.readouterr().out == ""
    [note] = caplog.records
    assert note.levelno == logging.WARNING
    assert note.message.startswith("note: device='auto': running on CPUExecutionProvider: the GPU could not be used")
    assert "libcublasLt.so.13" in note.message and note.message.endswith(NO_OPENVINO)


@pytest.mark.parametrize("available", [[TRT, CUDA, CPU], [CPU]])
def test_auto_on_a_machine_without_a_gpu_asks_for_the_cpu_and_says_so(monkeypatch, model_file, capfd, caplog,
                                                                       available):
    caplog.set_level(logging.INFO, logger="tseg")
    module, calls = fake_ort(available=available, loads=[CUDA, CPU])
    use(monkeypatch, module, gpu_visible=False)
    create_session(model_file, device="auto")
    assert calls.requested == [CPU]
    assert calls.events == ["session"]  # no CUDA libraries loaded for a CPU session
    assert capfd.readouterr().out == ""  # (stderr: the note, once a CLI test has shown tseg's notes there)
    [note] = caplog.records
    assert note.levelno == logging.INFO
    assert note.message == f"note: device='auto': running on CPUExecutionProvider: {NO_OPENVINO}"


def test_auto_with_a_gpu_but_a_cpu_only_onnxruntime_says_what_to_install(monkeypatch, model_file, capfd, caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    module, calls = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=True)
    monkeypatch.setattr(session_module.sys, "platform", "linux")
    create_session(model_file, device="auto")
    assert calls.requested == [CPU] and calls.events == ["session"]
    assert capfd.readouterr().out == ""
    [note] = caplog.messages
    assert note.startswith("note: device='auto': running on CPUExecutionProvider: this onnxruntime offers no")
    assert "pip install 'tseg[cuda]'" in note and note.endswith(NO_OPENVINO)


def test_the_clis_show_the_notes_on_stderr_naming_their_flags(monkeypatch, model_file):
    import click
    from click.testing import CliRunner

    from tseg.runtime.cli_errors import one_line_errors, show_notes

    @click.command()
    @click.option("--device", default="auto")
    @one_line_errors
    def command(device):
        show_notes()  # once per process, however many commands run
        create_session(model_file, device=device)

    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module, gpu_visible=True)
    result = CliRunner().invoke(command, [])
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "note: --device auto: running on CUDAExecutionProvider\n"


def test_auto_with_a_cpu_only_onnxruntime_on_macos_does_not_mention_cuda(monkeypatch, model_file, capfd, caplog):
    caplog.set_level(logging.INFO, logger="tseg")
    module, _ = fake_ort(available=[CPU], loads=[CPU])
    use(monkeypatch, module, gpu_visible=True)  # _nvidia_gpu_visible says True off Linux: it cannot tell
    monkeypatch.setattr(session_module.sys, "platform", "darwin")
    create_session(model_file, device="auto")
    assert capfd.readouterr().out == ""
    assert caplog.messages == [f"note: device='auto': running on CPUExecutionProvider: {NO_OPENVINO}"]


@pytest.mark.parametrize(
    ("device", "loads"), [("cuda", [CUDA, CPU]), ("tensorrt", [TRT, CUDA, CPU]), ("auto", [CUDA, CPU])]
)
def test_gpu_sessions_preload_the_pip_cuda_libraries_first(monkeypatch, model_file, device, loads):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=loads)
    use(monkeypatch, module, gpu_visible=True)
    create_session(model_file, device=device)
    assert calls.events == ["preload", "session"]
    create_session(model_file, device=device)
    assert calls.events == ["preload", "session", "session"]  # once per process


def test_a_cpu_session_does_not_preload(monkeypatch, model_file):
    module, calls = fake_ort(available=[TRT, CUDA, CPU], loads=[CUDA, CPU])
    use(monkeypatch, module)
    create_session(model_file, device="cpu")
    assert calls.events == ["session"]


def test_an_onnxruntime_without_preload_dlls_still_runs_cuda(monkeypatch, model_file, capfd):
    module, calls = fake_ort(available=[CUDA, CPU], loads=[CUDA, CPU], preload=None)
    use(monkeypatch, module)
    assert create_session(model_file, device="cuda").get_providers()[0] == CUDA
    assert calls.events == ["session"]
    assert capfd.readouterr() == ("", "")


def test_what_preload_prints_stays_off_the_terminal(monkeypatch, model_file, capfd):
    module, calls = fake_ort(available=[CUDA, CPU], loads=[CUDA, CPU], preload="prints")
    use(monkeypatch, module)
    create_session(model_file, device="cuda")
    assert calls.events == ["preload", "session"]
    assert capfd.readouterr() == ("", "")


def test_a_failed_preload_is_named_when_cuda_then_does_not_load(monkeypatch, model_file, capfd):
    module, _ = fake_ort(available=[CUDA, CPU], loads=[CPU], preload="raises")
    use(monkeypatch, module)
    with pytest.raises(TsegError) as caught:
        create_session(model_file, device="cuda")
    text = str(caught.value)
    assert "onnxruntime.preload_dlls failed: Invalid parameter of directory=None" in text
    assert "libcublasLt.so.13" in text and "pip install 'tseg[cuda]'" in text and "\n" not in text
    assert capfd.readouterr() == ("", "")


def test_a_failed_preload_does_not_stop_a_cuda_that_loads(monkeypatch, model_file, capfd):
    """The libraries may be on the library path already (a system CUDA): the session decides."""
    module, _ = fake_ort(available=[CUDA, CPU], loads=[CUDA, CPU], preload="raises")
    use(monkeypatch, module)
    assert create_session(model_file, device="cuda").get_providers()[0] == CUDA
    assert capfd.readouterr() == ("", "")


def test_a_model_onnx_runtime_cannot_load_is_one_line(monkeypatch, model_file):
    module, _ = fake_ort(available=[CPU], loads=[CPU], fails_with=RuntimeError("[ONNXRuntimeError] : 7 : bad\nmore"))
    use(monkeypatch, module)
    with pytest.raises(TsegError, match=r"m.onnx is not a loadable ONNX model: \[ONNXRuntimeError\] : 7 : bad$"):
        create_session(model_file, device="cpu")


def test_unknown_devices_and_missing_files_are_refused(tmp_path):
    with pytest.raises(TsegError, match="unknown device 'gpu'; valid: auto, cpu, cuda, tensorrt, openvino"):
        requested_providers("gpu", [CPU])
    with pytest.raises(TsegError, match="model file not found"):
        create_session(tmp_path / "missing.onnx", device="cpu")


def test_load_failure_reason_keeps_the_missing_library_and_the_requirement():
    assert load_failure_reason(REAL_LOG) == (
        "libcublasLt.so.13: cannot open shared object file: No such file or directory;"
        " Require cuDNN 9.* and CUDA 13.*"
    )
    assert load_failure_reason("") == ""


def test_a_real_session_prints_nothing(tmp_path, capfd):
    from tests.conv_models import conv_model

    session = create_session(conv_model(tmp_path / "m.onnx"), device="cpu")
    assert session.get_providers() == [CPU]
    assert capfd.readouterr() == ("", "")


def test_explicit_gpu_devices_on_this_machine_give_one_line_or_run_quietly(tmp_path):
    """Whatever this machine has: no ONNX Runtime banner or log reaches stdout or stderr."""
    from tests.conv_models import conv_model

    model = conv_model(tmp_path / "m.onnx")
    code = (
        "import sys\n"
        "from tseg.runtime.cli_errors import one_line_errors\n"
        "from tseg.runtime.model.session import create_session\n"
        "import click\n"
        "@click.command()\n"
        "@click.option('--device')\n"
        "@one_line_errors\n"
        "def main(device):\n"
        f"    create_session({str(model)!r}, device=device)\n"
        "    print('ok')\n"
        "main()\n"
    )
    for device in ("cuda", "tensorrt"):
        run = subprocess.run([sys.executable, "-c", code, "--device", device], capture_output=True, text=True,
                             timeout=120)
        if run.returncode == 0:
            assert run.stdout == "ok\n" and run.stderr == ""
        else:
            assert run.returncode == 1 and run.stdout == ""
            assert run.stderr.count("\n") == 1 and run.stderr.startswith(f"Error: --device {device}"), run.stderr
            assert "device=" not in run.stderr and "--device cpu or --device auto" in run.stderr, run.stderr


def test_captured_output_takes_native_and_python_output_and_restores_the_terminal(capfd):
    with capture.captured_output() as log:
        os.write(1, b"native out\n")
        os.write(2, b"native err\n")
        print("python out")
        print("python err", file=sys.stderr)
    assert capfd.readouterr() == ("", "")
    for line in ("native out", "native err", "python out", "python err"):
        assert line in log.getvalue()
    print("after")
    os.write(2, b"after err\n")
    assert capfd.readouterr() == ("after\n", "after err\n")


def test_captured_output_without_a_temp_file_still_takes_python_output(monkeypatch, capfd):
    def no_temp_files():
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(capture.tempfile, "TemporaryFile", no_temp_files)
    with capture.captured_output() as log:
        print("python out")
    assert log.getvalue() == "python out\n"
    assert capfd.readouterr() == ("", "")
