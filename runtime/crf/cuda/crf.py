"""``DenseCRF(..., device="cuda")`` and ``dense_crf(..., device="cuda")``.

:class:`CudaDenseCRF` is what ``DenseCRF(image, device="cuda")`` creates: the same
parameters, checks and results as the CPU class, with both lattices built on the device
and mean field run there. Importing this module needs numba-cuda and a GPU (or the
simulator): :func:`tseg.runtime.crf.cuda.device.require_cuda` says so first.
"""

from __future__ import annotations

import numpy as np
from numba import cuda

from tseg.runtime.crf.checks import Compat, check_crf_settings, check_iterations, check_threads, check_unary
from tseg.runtime.crf.cuda import kernels
from tseg.runtime.crf.cuda.device import grid
from tseg.runtime.crf.cuda.lattice import build_lattice
from tseg.runtime.crf.cuda.state import CudaMeanField
from tseg.runtime.crf.parameters import (
    BILATERAL_COMPAT,
    BILATERAL_SRGB,
    BILATERAL_SXY,
    GAUSSIAN_COMPAT,
    GAUSSIAN_SXY,
    ITERATIONS,
)
from tseg.runtime.crf.unary import CLIP
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import _source_grid


class CudaDenseCRF:
    """:class:`~tseg.runtime.crf.DenseCRF`'s interface, its lattices and mean field on the GPU.

    Made by ``DenseCRF(image, device="cuda", ...)``; the arguments are DenseCRF's
    (``threads`` is checked and unused). The lattices stay on the device until
    :meth:`close` (or the end of a ``with`` block); :meth:`start` returns a
    :class:`CudaMeanField`. Not a subclass of the CPU class, so that this module does not
    import it (DenseCRF imports this one).
    """

    def __init__(self, image: np.ndarray, *, gaussian_sxy: float = GAUSSIAN_SXY,
                 gaussian_compat: Compat = GAUSSIAN_COMPAT, bilateral_sxy: float = BILATERAL_SXY,
                 bilateral_srgb: float = BILATERAL_SRGB, bilateral_compat: Compat = BILATERAL_COMPAT,
                 threads: int | None = None, device: str = "cuda") -> None:
        self._compat = check_crf_settings(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                                          bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                                          bilateral_compat=bilateral_compat)
        self.threads = check_threads(threads)
        self.device = "cuda"
        self.height, self.width = image.shape[:2]
        pixels = cuda.to_device(np.ascontiguousarray(image))
        self._lattices = (build_lattice(pixels, sxy=gaussian_sxy, srgb=None),
                          build_lattice(pixels, sxy=bilateral_sxy, srgb=bilateral_srgb))

    def close(self) -> None:
        """Drop the device lattices; states already started keep theirs."""
        self._lattices = None

    def __enter__(self) -> CudaDenseCRF:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self, shape: tuple[int, int, int], *, base) -> CudaMeanField:
        if self._lattices is None:
            raise TsegError("DenseCRF: this CRF is closed; create a new one")
        return CudaMeanField(shape, self._lattices, compat=self._compat, base=base)

    def start(self, unary: np.ndarray) -> CudaMeanField:
        """Begin step-wise inference on the device: Q = softmax(-unary), no iteration yet.

        Args:
            unary: (C, H, W) float energies (negative log-probabilities).
        """
        check_unary(unary, self.height, self.width)
        flat = cuda.to_device(np.ascontiguousarray(unary, np.float32).reshape(unary.shape[0], -1))
        base = cuda.device_array(flat.shape, np.float32)
        kernels.base_from_unary[grid(flat.shape[1])](flat, base)
        return self._start(unary.shape, base=base)

    def start_from_probs(self, probs: np.ndarray, clip: float = CLIP) -> CudaMeanField:
        """start() on -log(clip(probs, clip, 1)), computed on the device. probs: (C, H, W),
        checked."""
        flat = cuda.to_device(np.ascontiguousarray(probs, np.float32).reshape(probs.shape[0], -1))
        base = cuda.device_array(flat.shape, np.float32)
        kernels.base_from_probs[grid(flat.shape[1])](flat, np.float32(clip), base)
        return self._start(probs.shape, base=base)

    def start_from_logits(self, logits, clip: float = CLIP) -> CudaMeanField:
        """start() on -log(clip(softmax(logits resized to the image), clip, 1)), all on the
        device: only the logits at the model's resolution travel (none when they are on the
        device already).

        Args:
            logits: (C, h, w) float32, checked: a host array, or a C-contiguous device array
                (Numba's, or anything with ``__cuda_array_interface__``, e.g. a model's
                output bound on the GPU).
            clip: the smallest probability kept.
        """
        num_classes, low_h, low_w = logits.shape
        flat = _on_device(logits).reshape(num_classes, low_h * low_w)
        taps = [cuda.to_device(t) for t in (*_source_grid(self.height, low_h), *_source_grid(self.width, low_w))]
        base = cuda.device_array((num_classes, self.height * self.width), np.float32)
        kernels.base_from_logits[grid(base.shape[1])](flat, low_w, *taps, np.log(np.float32(clip)), base)
        return self._start((num_classes, self.height, self.width), base=base)

    def inference(self, unary: np.ndarray, *, iterations: int = ITERATIONS) -> np.ndarray:
        """Run mean field on the device; returns Q (C, H, W) float32 (a new host array)."""
        check_iterations(iterations)
        with self.start(unary) as state:
            state.step(iterations)
            return state.probs()


def check_device_logits(logits) -> object:
    """(C, h, w) float32 logits already on the GPU, C >= 2, C-contiguous, finite (checked there:
    one kernel and one flag back), as a Numba device array; a one-line error otherwise."""
    array = _on_device(logits)
    shape, dtype = tuple(array.shape), np.dtype(array.dtype)
    if len(shape) != 3 or shape[0] < 2 or min(shape) < 1 or dtype != np.float32:
        raise TsegError(f"logits: need (C, h, w) float32 logits on the GPU with C >= 2, got shape {shape} {dtype}")
    if not array.is_c_contiguous():
        raise TsegError("logits: need C-contiguous logits on the GPU (a model's output, or one image of it)")
    if not all_finite_on_device(array):
        raise TsegError("logits: need finite values, got NaN or inf")
    return array


def all_finite_on_device(array) -> bool:
    """Whether a C-contiguous float32 Numba device array holds no NaN or inf: one kernel, one flag back."""
    flag = cuda.to_device(np.zeros(1, np.int32))
    flat = array.reshape(array.size)
    kernels.flag_nonfinite[grid(flat.shape[0])](flat, flag)
    return not flag.copy_to_host()[0]


def _on_device(array):
    """A (C, h, w) float32 array on the device: Numba's device arrays as they are, others with
    ``__cuda_array_interface__`` wrapped without a copy (the simulator has neither the protocol
    nor ``as_cuda_array``), host arrays copied over."""
    if hasattr(array, "copy_to_host"):
        return array
    if hasattr(array, "__cuda_array_interface__"):
        return cuda.as_cuda_array(array)
    return cuda.to_device(np.ascontiguousarray(array, np.float32))
