"""Whether the CUDA CRF can run here, and the launch shapes of its kernels.

Nothing here imports ``numba.cuda`` at module level: :func:`cuda_problem` does, once a
caller asks for ``device="cuda"`` (or the runtime's ``"auto"`` considers the GPU), and names a
missing package or a missing GPU with what to install; :func:`require_cuda` turns that into one
:class:`~tseg.runtime.errors.TsegError`.
"""

from __future__ import annotations

import importlib.util

from numba.core import config

from tseg.runtime.errors import TsegError

INSTALL = "pip install 'tseg[cuda]'"
_THREADS = 256  # threads per block on a GPU
_MAX_BLOCKS = 65536  # grid-stride loops cover the rest
# numba-cuda warns of low occupancy below 128 blocks; the extra blocks of a grid-stride
# loop find no work and exit at once.
_MIN_BLOCKS = 128
# The simulator runs one Python thread per CUDA thread: one small block whose threads
# stride over the work keeps a launch cheap there.
_SIM_THREADS = 8


def simulated() -> bool:
    """Whether Numba's CUDA simulator stands in for a GPU (NUMBA_ENABLE_CUDASIM=1)."""
    return bool(config.ENABLE_CUDASIM)


def cuda_problem() -> str:
    """Why the CUDA CRF cannot run here, as what it needs: "NVIDIA's numba-cuda package, which is
    not installed: pip install 'tseg[cuda]'" (one clause naming what to install); "" when it can
    (numba-cuda, a GPU and NVVM, or the simulator). Never raises: the runtime's ``device="auto"``
    asks before choosing (:mod:`tseg.runtime.segment.crf_device`)."""
    if importlib.util.find_spec("numba_cuda") is None:
        return f"NVIDIA's numba-cuda package, which is not installed: {INSTALL}"
    try:
        from numba import cuda
    except Exception as exc:  # a broken install: its own error says what is wrong
        return f"NVIDIA's numba-cuda package, which is installed but does not import ({_first_line(exc)}): {INSTALL}"
    if simulated():
        return ""
    if not cuda.is_available():
        return f"an NVIDIA GPU and its driver, and numba-cuda found none (the CUDA libraries come with {INSTALL})"
    from numba.cuda.cudadrv.nvvm import NVVM

    try:
        NVVM()  # the kernels' compiler: a GPU without it fails at the first kernel
    except Exception as exc:
        return f"NVIDIA's CUDA compiler library (NVVM), which numba-cuda cannot load ({_first_line(exc)}): {INSTALL}"
    return ""


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def require_cuda() -> None:
    """Raise a one-line TsegError unless NVIDIA's numba-cuda and a GPU (or the
    simulator) are here (:func:`cuda_problem` says what is missing)."""
    problem = cuda_problem()
    if problem:
        raise TsegError(f"device='cuda' needs {problem}; or use device='cpu'", parameter="device")


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads per block) for a grid-stride kernel over n items."""
    if simulated():
        return 1, _SIM_THREADS
    return max(_MIN_BLOCKS, min(_MAX_BLOCKS, -(-n // _THREADS))), _THREADS
