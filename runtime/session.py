"""ONNX Runtime sessions: provider choice and a check of what really runs.

onnxruntime-gpu lists CUDA and TensorRT even where they cannot load, and
without an explicit provider list it quietly runs on the CPU. So we ask for
providers explicitly and compare with ``session.get_providers()`` afterwards.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tseg.runtime.errors import TsegError

DEVICES = ("auto", "cpu", "cuda", "tensorrt")
_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def _nvidia_gpu_visible() -> bool:
    """False on Linux machines without NVIDIA device nodes, where CUDA cannot load anyway."""
    if not sys.platform.startswith("linux"):
        return True
    return Path("/dev/nvidiactl").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


def _requested_providers(device: str, available: list[str]) -> list[str]:
    if device not in DEVICES:
        raise TsegError(f"unknown device {device!r}; valid: {', '.join(DEVICES)}")
    if device == "auto":
        # onnxruntime-gpu offers CUDA even on machines without a GPU; trying it
        # there costs a slow, noisy failed library load.
        use_cuda = "CUDAExecutionProvider" in available and _nvidia_gpu_visible()
        device = "cuda" if use_cuda else "cpu"
    wanted = _PROVIDERS[device]
    if wanted[0] not in available:
        raise TsegError(
            f"device {device!r} needs {wanted[0]}, but this onnxruntime offers only {', '.join(available)}"
        )
    return wanted


def create_session(model_path: str | Path, *, device: str = "auto", threads: int | None = None):
    """Opens an ONNX model in ONNX Runtime on the requested device.

    Args:
        model_path: the .onnx file.
        device: "auto" (CUDA when onnxruntime offers it and an NVIDIA GPU is
            visible, else CPU), "cpu",
            "cuda" or "tensorrt".
        threads: intra-op threads; None lets onnxruntime choose.

    Returns:
        An ``onnxruntime.InferenceSession``. If a GPU provider was requested
        but did not load, a warning naming the providers in use goes to stderr.

    Raises:
        TsegError: the file is missing or not an ONNX model, or the device is unknown.
    """
    import onnxruntime as ort

    path = Path(model_path)
    if not path.is_file():
        raise TsegError(f"model file not found: {path}")
    requested = _requested_providers(device, ort.get_available_providers())
    options = ort.SessionOptions()
    # Spinning worker threads steal the cores from the CRF that runs next.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # Provider load failures are reported by us below, in one line.
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=requested)
    except Exception as err:  # onnxruntime raises its own exception types
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TsegError(f"{path} is not a loadable ONNX model: {first_line[:300]}") from None
    used = session.get_providers()
    if requested[0] != "CPUExecutionProvider" and requested[0] not in used:
        # Explicit requests warn; "auto" on a machine without a usable GPU only notes it.
        level = "note" if device == "auto" else "WARNING"
        print(
            f"{level}: {requested[0]} ({device}) could not be loaded; running on {', '.join(used)}",
            file=sys.stderr,
        )
    return session
