"""Sessions: the engine a device names, ``device="auto"``'s rule, and a check of what really runs.

onnxruntime-gpu lists CUDA and TensorRT even where they cannot load, and then
quietly runs on the CPU (after printing coloured logs to stderr and, for TensorRT,
a banner to stdout). So we ask for providers explicitly, keep ONNX Runtime's own
output off the terminal while a session is created, and compare the providers we
asked for with ``session.get_providers()`` afterwards: an explicit GPU device that
did not load is an error naming the reason.

``device="auto"`` picks the engine by one rule, first match wins:

1. **a GPU that loads**: ONNX Runtime's CUDAExecutionProvider, when this onnxruntime offers
   it, an NVIDIA GPU is visible and the provider loads;
2. **OpenVINO on the CPU**, when the ``openvino`` package imports and lists a CPU device
   (:func:`~tseg.runtime.model.openvino.openvino_availability`), in float32 as the file is:
   bfloat16 is only ever asked for explicitly (``device="openvino"`` with
   ``OpenVinoSettings(bf16=True)``), so ``auto`` never changes a model's precision;
3. **ONNX Runtime's CPUExecutionProvider**.

``threads`` goes to whichever engine runs. The session names its engine in ``get_providers()``
(:func:`session_device` gives the device), and one note goes to :data:`~tseg.runtime.errors.logger`
(the CLIs show it on stderr, ``note: --device auto: running on ...``): INFO, or WARNING when an
engine that is installed could not be used (a GPU whose libraries do not load, an OpenVINO that
does not import). Library code prints nothing. An engine the rule picked that then fails on the
model is an error, never a quiet switch to the next one: OpenVINO's errors add that
``device='cpu'`` runs ONNX Runtime instead.

Before a CUDA or TensorRT session, ``onnxruntime.preload_dlls()`` (ONNX Runtime >= 1.21)
loads the CUDA and cuDNN libraries from NVIDIA's pip wheels (``pip install 'tseg[cuda]'``),
which the dynamic loader would not find on its own.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from tseg.runtime.errors import TsegError, note_choice
from tseg.runtime.inputs import check_model_file
from tseg.runtime.model import tensorrt as trt
from tseg.runtime.model.capture import captured_output
from tseg.runtime.model.onnx_file import read_model_file
from tseg.runtime.model.openvino import PROVIDER as OPENVINO_PROVIDER
from tseg.runtime.model.openvino import OpenVinoSession, OpenVinoSettings, openvino_availability

DEVICES = ("auto", "cpu", "cuda", "tensorrt", "openvino")
# Intra-op threads (ONNX Runtime, torch): more than the CPUs only adds spinning and contention, and
# thousands of them exhaust a limited address space (ONNX Runtime then deadlocks in its pool's start).
MAX_THREADS = os.cpu_count() or 1
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
CUDA_EXTRA = "pip install 'tseg[cuda]'"
AUTO_NOTE = "note: device='auto': running on"  # every note of device="auto"'s rule starts so
CPU_HINT = "device='cpu' runs ONNX Runtime instead"
_LIBRARY_HINTS = {
    "cuda": (
        f"the CUDA (12 or 13, as this onnxruntime-gpu was built for) and cuDNN 9 libraries ({CUDA_EXTRA} brings"
        " NVIDIA's pip wheels of both) and an NVIDIA driver"
    ),
    "tensorrt": f"CUDA and cuDNN 9 ({CUDA_EXTRA})",  # after trt.install_hint(), which names the TensorRT wanted
}
# ONNX Runtime's log severities: 0 verbose, 1 info, 2 warning, 3 error, 4 fatal. tseg reports what goes
# wrong in its own words (one line); ONNX Runtime's coloured log lines reach stderr only in verbose mode.
_QUIET, _VERBOSE = 4, 2
_log_level = [_QUIET]


def set_engine_logging(*, verbose: bool) -> None:
    """Lets ONNX Runtime's own warnings and errors through to stderr (tseg-infer's ``--verbose``), or keeps them off."""
    _log_level[0] = _VERBOSE if verbose else _QUIET
    import onnxruntime as ort

    ort.set_default_logger_severity(_log_level[0])


def check_threads(threads: object) -> int | None:
    """``threads`` if it is None or an integer in 1..MAX_THREADS (this machine's CPUs).

    Raises:
        TsegError: naming ``threads`` and the valid range.
    """
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise TsegError(
            f"threads: need an integer in 1..{MAX_THREADS} (this machine's CPUs), got {threads!r:.40}",
            parameter="threads",
        )
    return threads


def _nvidia_gpu_visible() -> bool:
    """False on Linux machines without NVIDIA device nodes, where CUDA cannot load anyway."""
    if not sys.platform.startswith("linux"):
        return True
    # /dev/dxg: WSL2's GPU, which has no /dev/nvidia* nodes.
    return Path("/dev/nvidiactl").exists() or Path("/dev/dxg").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def requested_providers(device: str, available: list[str]) -> list[str]:
    """The provider list to ask ONNX Runtime for.

    Args:
        device: one of :data:`DEVICES` but "openvino"; "auto" gets CUDA's list when this
            onnxruntime offers it and an NVIDIA GPU is visible, else the CPU's (the rule's
            first step; :func:`create_session` takes the rest).
        available: ``onnxruntime.get_available_providers()``.

    Raises:
        TsegError: the device is unknown, or an explicit GPU device's provider is not in ``available``.
    """
    if device not in DEVICES:
        raise TsegError(f"device: unknown device {device!r:.40}; valid: {', '.join(DEVICES)}", parameter="device")
    if device == "auto":
        # onnxruntime-gpu offers CUDA even on machines without a GPU; trying it
        # there costs a slow, noisy failed library load.
        use_cuda = "CUDAExecutionProvider" in available and _nvidia_gpu_visible()
        device = "cuda" if use_cuda else "cpu"
    if device not in _PROVIDERS:  # OpenVINO is not an ONNX Runtime provider (see create_session)
        raise TsegError(f"device: {device!r} is not run by ONNX Runtime", parameter="device")
    wanted = _PROVIDERS[device]
    if wanted[0] not in available:
        raise TsegError(
            f"device={device!r} needs {wanted[0]}, but this onnxruntime offers only {', '.join(available)}:"
            f" {CUDA_EXTRA} (onnxruntime-gpu in place of onnxruntime, with NVIDIA's CUDA and cuDNN 9 wheels)"
            + (", and the TensorRT libraries (e.g. pip install tensorrt)" if device == "tensorrt" else ""),
            parameter="device",
        )
    return wanted


_preloaded: list[str] = []  # what preload_dlls reported, once per process


def preload_gpu_libraries(ort) -> str:
    """Loads CUDA and cuDNN from NVIDIA's pip wheels, where this ONNX Runtime can (>= 1.21).

    Call inside :func:`captured_output`: ``preload_dlls`` prints its failures. Runs once
    per process (the libraries a process has loaded do not change).

    Returns:
        Why preloading failed ('' when it ran, or this ONNX Runtime has no ``preload_dlls``),
        for the error message should the GPU provider then not load.
    """
    if _preloaded:
        return _preloaded[0]
    reason = ""
    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as err:  # a broken install: the session's own failure will say more
            reason = f"onnxruntime.preload_dlls failed: {str(err).strip()[:200] or type(err).__name__}"
    _preloaded.append(reason)
    return reason


def load_failure_reason(log: str) -> str:
    """The gist of why ONNX Runtime could not load a provider, from its captured logs ('' if none)."""
    log = re.sub(r"\x1b\[[0-9;]*m", "", log)
    reasons = []
    missing = re.search(r"with error: ([^\n]+)", log)
    if missing:
        reasons.append(missing.group(1).strip())
    needs = re.search(r"(Require[^.\n]*(?:\.[^.\n\s][^.\n]*)*)\.", log)
    if needs:
        reasons.append(needs.group(1).strip())
    if not reasons:
        failures = [line.strip() for line in log.splitlines() if "Please install" in line or "Failed" in line]
        reasons += failures[:1]
    return "; ".join(reasons)[:300]


def _check_engine_settings(settings: object, *, kind: type, device: str, engine: str, what: str) -> None:
    """One engine's settings (``tensorrt=``, ``openvino=``): None, or of their type and with their device.

    Raises:
        TsegError: naming the parameter (the engine's name).
    """
    if settings is None:
        return
    if not isinstance(settings, kind):
        raise TsegError(f"{engine}: need a {kind.__name__} or None, got {type(settings).__name__}", parameter=engine)
    if device != engine:
        raise TsegError(f"{engine}: {what} apply only to device={engine!r}, got device={device!r}", parameter=engine)


def create_session(
    model_path: str | Path,
    *,
    device: str = "auto",
    threads: int | None = None,
    tensorrt: trt.TensorrtSettings | None = None,
    openvino: OpenVinoSettings | None = None,
):
    """Opens an ONNX model in ONNX Runtime (or OpenVINO) on the requested device.

    Args:
        model_path: the .onnx file.
        device: "auto" (the rule above: CUDA when it loads, else OpenVINO on the CPU when it
            is installed, else ONNX Runtime's CPU provider; one note on
            :data:`~tseg.runtime.errors.logger` names the choice), "cpu" (ONNX
            Runtime's CPU provider), "cuda" or "tensorrt" (each of the last two: that provider
            or an error), "openvino" (OpenVINO Runtime on the CPU, or an error naming what
            to install). GPU sessions first load CUDA and cuDNN from NVIDIA's pip wheels
            (``onnxruntime.preload_dlls``, where this onnxruntime has it).
        threads: intra-op threads (OpenVINO's inference threads); None lets the engine choose.
        tensorrt: with device "tensorrt", the engine settings (FP16, batch size, cache
            folder) that become TensorRT's provider options (:mod:`tseg.runtime.model.tensorrt`):
            TensorRT's library and the GPU are looked up first, and the cache folders made.
            None: ONNX Runtime's defaults (no engine cache). Refused with any other device.
        openvino: with device "openvino", its precision and cache folder
            (:class:`~tseg.runtime.model.openvino.OpenVinoSettings`; None: f32). Refused with
            any other device ("auto" included: it runs OpenVINO in f32 only).

    Returns:
        An ``onnxruntime.InferenceSession`` (an :class:`~tseg.runtime.model.openvino.OpenVinoSession`
        when OpenVINO runs it); :func:`session_device` says which device that is. Nothing goes
        to stdout or stderr.

    Raises:
        TsegError: the file is missing or not an ONNX model, the device is
            unknown, or an explicit GPU device is not offered or does not load;
            TensorRT settings with another device, TensorRT's library or the GPU
            not found, a TensorRT cache folder that cannot be made.
    """
    import onnxruntime as ort

    _check_engine_settings(tensorrt, kind=trt.TensorrtSettings, device=device, engine="tensorrt",
                           what="TensorRT settings (FP16, engine caches)")
    _check_engine_settings(openvino, kind=OpenVinoSettings, device=device, engine="openvino",
                           what="OpenVINO settings (bf16, cache folder)")
    path = Path(model_path)
    threads = check_threads(threads)
    if device == "openvino":  # it checks and reads the file itself
        return OpenVinoSession(path, threads=threads, settings=openvino)
    check_model_file(path, what="model")
    if device == "auto":
        return _auto_session(path, threads=threads)
    requested = requested_providers(device, ort.get_available_providers())
    session, failure = _ort_session(path, requested=requested, threads=threads, tensorrt=tensorrt)
    check_providers(session.get_providers(), requested=requested, device=device, reason=failure)
    return session


def _ort_session(path: Path, *, requested: list[str], threads: int | None,
                tensorrt: trt.TensorrtSettings | None = None) -> tuple[object, str]:
    """An ONNX Runtime session asking for ``requested`` providers, ONNX Runtime's own output kept off the terminal.

    Args:
        path: the .onnx file (already checked to be a regular ONNX file).
        requested: :func:`requested_providers`' list (first: the device's own provider).
        threads: intra-op threads, already checked; None lets ONNX Runtime choose.
        tensorrt: TensorRT's settings, when the first provider is TensorRT's.

    Returns:
        (the session, why a GPU provider did not load: '' when it did, or nothing was said).
        The session may run on fewer providers than requested: :func:`check_providers` judges.

    Raises:
        TsegError: ONNX Runtime cannot load the model.
    """
    import onnxruntime as ort

    ort.set_default_logger_severity(_log_level[0])
    providers: list = list(requested)
    if tensorrt is not None:
        providers[0] = (requested[0], trt.checked_provider_options(path, tensorrt))
    options = ort.SessionOptions()
    # Spinning worker threads steal the cores from the CRF that runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = _log_level[0]
    if threads is not None:
        options.intra_op_num_threads = threads
    # Warnings are captured too: they carry the "Require cuDNN 9.* and CUDA 13.*" line.
    ort.set_default_logger_severity(2)
    try:
        with captured_output() as log:
            preload_failure = preload_gpu_libraries(ort) if requested[0] != "CPUExecutionProvider" else ""
            session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own exception types
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TsegError(f"{path} is not a loadable ONNX model: {first_line[:300]}") from None
    finally:
        ort.set_default_logger_severity(_log_level[0])
    failure = "; ".join(part for part in (load_failure_reason(log.getvalue()), preload_failure) if part)
    return session, failure


def session_device(session) -> str:
    """The device a session from :func:`create_session` runs on: "cpu", "cuda", "tensorrt" or "openvino"
    (what ``device="auto"`` chose, named as an explicit ``device=`` would choose it again)."""
    first = session.get_providers()[0]
    if first.startswith(OPENVINO_PROVIDER):
        return "openvino"
    return next((name for name, providers in _PROVIDERS.items() if providers[0] == first), "cpu")


def _auto_session(path: Path, *, threads: int | None):
    """The session ``device="auto"`` picks for ``path`` (the rule in this module's docstring), after one note.

    Args:
        path: the .onnx file, already checked to be a regular ONNX file.
        threads: intra-op threads (OpenVINO's inference threads), already checked; None: the engine's choice.

    Raises:
        TsegError: the chosen engine cannot load the model (one line; for OpenVINO it adds
            that ``device='cpu'`` runs ONNX Runtime instead).
    """
    import onnxruntime as ort

    passed_over: list[str] = []  # why each engine before the chosen one was not taken
    warn = False
    requested = requested_providers("auto", ort.get_available_providers())
    cpu_session = None
    if requested[0] != "CPUExecutionProvider":  # a GPU this onnxruntime offers, and one is visible
        session, failure = _ort_session(path, requested=requested, threads=threads)
        if requested[0] in session.get_providers():
            _note_auto(session, passed_over, warn=False)
            return session
        cpu_session, warn = session, True  # ONNX Runtime ran it on the CPU instead
        passed_over.append("the GPU could not be used" + (f" ({failure})" if failure else ""))
    elif _gpu_note_wanted():
        passed_over.append(f"this onnxruntime offers no CUDAExecutionProvider ({CUDA_EXTRA} to use the GPU)")
    openvino = openvino_availability()
    if openvino.usable:
        session = _auto_openvino(path, threads=threads)
        _note_auto(session, passed_over, warn=warn, hint=CPU_HINT)
        return session
    passed_over.append(openvino.reason)
    if cpu_session is None:
        cpu_session, _ = _ort_session(path, requested=["CPUExecutionProvider"], threads=threads)
    _note_auto(cpu_session, passed_over, warn=warn or openvino.installed)
    return cpu_session


def _auto_openvino(path: Path, *, threads: int | None) -> OpenVinoSession:
    """OpenVINO in f32 on ``path``; its refusals of the model say that ONNX Runtime is the other way."""
    read_model_file(path)  # a file no engine could read is refused as it is, without the hint
    try:
        return OpenVinoSession(path, threads=threads)
    except TsegError as err:
        raise TsegError(f"{err} (device='auto' chose OpenVINO; {CPU_HINT})", parameter=err.parameter) from None


def _note_auto(session, passed_over: list[str], *, warn: bool, hint: str = "") -> None:
    """One line naming the engine that runs, why the ones before it in the rule did not, and ``hint``."""
    text = f"{AUTO_NOTE} {session.get_providers()[0]}"
    if passed_over:
        text += ": " + "; ".join(passed_over)
    if hint:
        text += f"; {hint}"
    note_choice(text, warn=warn)


def _gpu_note_wanted() -> bool:
    """A GPU that CUDA could use is visible (Linux or Windows; never on macOS)."""
    return sys.platform.startswith(("linux", "win")) and _nvidia_gpu_visible()


def check_providers(used: list[str], *, requested: list[str], device: str, reason: str = "") -> None:
    """Refuses an explicit GPU device that did not load.

    Args:
        used: ``session.get_providers()``.
        requested: what was asked for (first = the device's own provider).
        device: the user's device choice ("cpu", "cuda" or "tensorrt").
        reason: why the provider did not load, from :func:`_ort_session`.

    Raises:
        TsegError: ``device`` is "cuda" or "tensorrt" and its provider is not in ``used``.
    """
    wanted = requested[0]
    if wanted == "CPUExecutionProvider" or wanted in used:
        return
    because = f" ({reason})" if reason else ""
    hint = _LIBRARY_HINTS[device]
    if device == "tensorrt":
        hint = f"{trt.install_hint()}, besides {hint}"
    raise TsegError(
        f"device={device!r}: {wanted} is installed but could not be loaded{because}; install"
        f" {hint}, or use device='cpu' or device='auto'",
        parameter="device",
    )
