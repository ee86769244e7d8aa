"""Whether the CUDA CRF can run here, and the launch shapes of its kernels.

Nothing here imports ``numba.cuda`` at module level: :func:`require_cuda` does, once a
caller asks for ``device="cuda"``, and turns a missing package or a missing GPU into one
:class:`~tseg.runtime.errors.TsegError` naming what to install.
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


def require_cuda() -> None:
    """Raise a one-line TsegError unless NVIDIA's numba-cuda and a GPU (or the
    simulator) are here."""
    if importlib.util.find_spec("numba_cuda") is None:
        raise TsegError(f"device='cuda' needs NVIDIA's numba-cuda package, which is not "
                        f"installed: {INSTALL}", parameter="device")
    from numba import cuda

    if simulated():
        return
    if not cuda.is_available():
        raise TsegError("device='cuda' needs an NVIDIA GPU and its driver, and numba-cuda "
                        f"found none (the CUDA libraries come with {INSTALL}); use "
                        "device='cpu'", parameter="device")
    from numba.cuda.cudadrv.nvvm import NVVM

    try:
        NVVM()  # the kernels' compiler: a GPU without it fails at the first kernel
    except Exception as exc:
        why = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TsegError(f"device='cuda' needs NVIDIA's CUDA compiler library (NVVM), which "
                        f"numba-cuda cannot load ({why}): {INSTALL}", parameter="device") from None


def grid(n: int) -> tuple[int, int]:
    """(blocks, threads per block) for a grid-stride kernel over n items."""
    if simulated():
        return 1, _SIM_THREADS
    return max(_MIN_BLOCKS, min(_MAX_BLOCKS, -(-n // _THREADS))), _THREADS
