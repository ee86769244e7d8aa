"""Where the runtime's dense CRF runs: ``CrfParams(device=...)`` and ``tseg-infer --crf-device``.

``"cpu"`` is the Numba CPU path (:mod:`tseg.runtime.crf`), what the runtime always ran. ``"cuda"``
is the Numba CUDA kernels (:mod:`tseg.runtime.crf.cuda`; ``pip install 'tseg[cuda]'``), and an
error naming what to install when they cannot run here. ``"auto"`` follows the model, one rule:

1. **the GPU** when the model runs on CUDA (its session's device is ``"cuda"`` or ``"tensorrt"``,
   :func:`~tseg.runtime.model.session.session_device`) and the CUDA CRF can run here (numba-cuda
   imports, a GPU and NVIDIA's compiler library load:
   :func:`~tseg.runtime.crf.cuda.device.cuda_problem`, the one check);
2. **the CPU** otherwise (and always for settings used without a model: ``model_device=None``).

Choosing for a model logs one note to :data:`~tseg.runtime.errors.logger`, as ``device="auto"``
does for the model's engine (the CLIs show ``note: CRF device 'auto': the CRF runs on ...`` once the
command has succeeded): INFO, or a WARNING shown at once when the model is on a GPU but the CUDA
CRF cannot run (it names why and what to install). Nothing CUDA is imported unless the model runs
on a GPU or ``"cuda"`` is asked for, and importing this module does not import Numba.
"""

from __future__ import annotations

from tseg.runtime.crf.parameters import DEVICES
from tseg.runtime.errors import TsegError, note_choice

CRF_DEVICES = ("auto", *DEVICES)
"""The runtime's CRF devices: the algorithm's ("cpu", "cuda") and "auto"."""
GPU_MODEL_DEVICES = ("cuda", "tensorrt")
"""Model devices (:func:`~tseg.runtime.model.session.session_device`) that run on an NVIDIA GPU."""
CRF_AUTO_NOTE = "note: CRF device 'auto': the CRF runs on"
"""How every note of ``"auto"``'s choice starts."""


def check_crf_device(device: object) -> str:
    """``device`` if it is one of :data:`CRF_DEVICES`, else a one-line TsegError."""
    if not isinstance(device, str) or device not in CRF_DEVICES:
        raise TsegError(f"CRF device must be one of {', '.join(map(repr, CRF_DEVICES))}, got {device!r:.60}")
    return device


def cuda_crf_problem() -> str:
    """What the CUDA CRF needs and this machine lacks, naming what to install; "" when it can run."""
    from tseg.runtime.crf.cuda.device import cuda_problem

    return cuda_problem()


def require_cuda_crf() -> None:
    """Refuses device "cuda" where the CUDA CRF cannot run (call it before any work).

    Raises:
        TsegError: one line naming what is missing and what to install.
    """
    problem = cuda_crf_problem()
    if problem:
        raise TsegError(f"CRF device 'cuda' needs {problem}; or run the CRF on the CPU (CRF device 'cpu')")


def resolve_crf_device(device: str, *, model_device: str | None) -> str:
    """The device the CRF runs on: "cpu" or "cuda" (module docstring); "auto"'s choice is logged.

    Args:
        device: "auto", "cpu" or "cuda".
        model_device: the device the model runs on (:attr:`Segmenter.device
            <tseg.runtime.segment.segmenter.Segmenter.device>`), or None for settings used
            without a model (then "auto" is the CPU, and nothing is logged).

    Raises:
        TsegError: ``device`` is not one of :data:`CRF_DEVICES`, or is "cuda" and the CUDA CRF
            cannot run here (:func:`require_cuda_crf`).
    """
    device = check_crf_device(device)
    if device == "cuda":
        require_cuda_crf()
    if device != "auto":
        return device
    if model_device is None:
        return "cpu"
    if model_device not in GPU_MODEL_DEVICES:
        note_choice(f"{CRF_AUTO_NOTE} the CPU, as the model does (device {model_device!r})", warn=False)
        return "cpu"
    problem = cuda_crf_problem()
    if problem:
        note_choice(f"{CRF_AUTO_NOTE} the CPU although the model runs on the GPU (device {model_device!r}): the"
                    f" CUDA CRF needs {problem}", warn=True)
        return "cpu"
    note_choice(f"{CRF_AUTO_NOTE} the GPU (CUDA), as the model does (device {model_device!r})", warn=False)
    return "cuda"

