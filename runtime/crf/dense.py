"""Fully connected CRF (Kraehenbuehl & Koltun 2011) with mean-field inference.

The model and its numbers follow pydensecrf (DenseCRF2D with a Gaussian and a
bilateral kernel, symmetric normalisation): https://arxiv.org/abs/1210.5644.
Arrays at this boundary are label-first like the rest of tseg: probabilities and
unaries (C, H, W), images (H, W, 3) uint8.
"""

from __future__ import annotations

import numpy as np

from tseg.runtime.crf import workspace
from tseg.runtime.crf.cache import LatticeCache
from tseg.runtime.crf.checks import (
    Compat,
    check_crf_settings,
    check_device,
    check_iterations,
    check_labels,
    check_num_classes,
    check_open_unit,
    check_probs,
    check_threads,
    check_unary,
)
from tseg.runtime.crf.features import pixel_features
from tseg.runtime.crf.lattice import Lattice, build_lattices
from tseg.runtime.crf.parameters import (
    BILATERAL_COMPAT,
    BILATERAL_SRGB,
    BILATERAL_SXY,
    GAUSSIAN_COMPAT,
    GAUSSIAN_SXY,
    ITERATIONS,
)
from tseg.runtime.crf.state import MeanField
from tseg.runtime.crf.unary import CLIP
from tseg.runtime.crf.unary import unary_from_probs as _energies
from tseg.runtime.errors import TsegError
from tseg.runtime.images import check_image

_gaussian_cache = LatticeCache()


def _build(image: np.ndarray, gaussian_sxy: float, bilateral_sxy: float,
           bilateral_srgb: float, threads: int) -> tuple[Lattice, Lattice]:
    """Both lattices of an image, each owned once by the caller. The Gaussian one
    depends on the image size and sxy alone, so images of one size (a dataset, a video)
    share it: the last few are cached."""
    height, width = image.shape[:2]
    key = (height, width, float(np.float32(gaussian_sxy)))
    gaussian = _gaussian_cache.take(key)
    try:
        with workspace.Lease() as scratch:
            features = [pixel_features(image, sxy=bilateral_sxy, srgb=bilateral_srgb,
                                       threads=threads, lease=scratch)]
            if gaussian is None:  # built side by side with the bilateral one
                features.insert(0, pixel_features(image, sxy=gaussian_sxy, srgb=None,
                                                  threads=threads, lease=scratch))
            built = build_lattices(features, height * width, threads, scratch)
    except BaseException:
        if gaussian is not None:
            gaussian.lease.release()
        raise
    if gaussian is None:
        gaussian = built[0]
        # Shared between DenseCRF objects from now on: nothing writes lattices after the
        # build (read-only flags would make Numba compile every kernel a second time).
        _gaussian_cache.put(key, gaussian)
    return gaussian, built[-1]


class DenseCRF:
    """Dense CRF over one image: the lattices are built once, inference runs per unary.

    Pairwise energy: a Gaussian kernel on position (smoothness) and a bilateral kernel
    on position and colour (appearance), each with symmetric normalisation. A scalar
    compat ``w`` is pydensecrf's Potts model (it adds ``w * K~Q`` to the logits, i.e. it
    equals the matrix ``-w * I``); a (C,) vector or (C, C) matrix ``M`` subtracts
    ``M @ K~Q`` (a matrix is symmetrised as ``(M + M.T) / 2``), as pydensecrf does.

    The lattices live in pooled memory that this object owns until :meth:`close` (or the
    end of a ``with`` block; failing both, until it is garbage collected). Results
    returned by :meth:`inference` are the caller's.

    Args:
        image: (H, W, 3) uint8 RGB image.
        gaussian_sxy: Gaussian kernel width in pixels.
        gaussian_compat: Gaussian compatibility: scalar, (C,) or (C, C).
        bilateral_sxy: bilateral kernel width in pixels.
        bilateral_srgb: bilateral kernel width in colour levels.
        bilateral_compat: bilateral compatibility: scalar, (C,) or (C, C).
        threads: threads for lattice building and inference; None: every core this
            process may use.
        device: 'cpu', or 'cuda' for the lattices and mean field on an NVIDIA GPU
            (:mod:`tseg.runtime.crf.cuda`; needs ``pip install 'tseg[cuda]'``).

    Example:
        >>> with DenseCRF(image) as crf:
        ...     q = crf.inference(unary_from_probs(probs), iterations=5)
    """

    def __new__(cls, *args, device: str = "cpu", **kwargs):
        if check_device(device) == "cuda":  # the same interface, another class: cuda imports no CPU class
            from tseg.runtime.crf.cuda.device import require_cuda
            require_cuda()  # a one-line error before any CUDA module loads
            from tseg.runtime.crf.cuda.crf import CudaDenseCRF
            return CudaDenseCRF(*args, **kwargs)  # not a DenseCRF: Python skips __init__
        return super().__new__(cls)

    def __init__(
        self,
        image: np.ndarray,
        *,
        gaussian_sxy: float = GAUSSIAN_SXY,
        gaussian_compat: Compat = GAUSSIAN_COMPAT,
        bilateral_sxy: float = BILATERAL_SXY,
        bilateral_srgb: float = BILATERAL_SRGB,
        bilateral_compat: Compat = BILATERAL_COMPAT,
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        # Fail on a malformed setting now, not at the first inference.
        self._compat = check_crf_settings(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                                          bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                                          bilateral_compat=bilateral_compat)
        self.height, self.width = image.shape[:2]
        self.threads = check_threads(threads)
        self.device = "cpu"  # "cuda" made a CudaDenseCRF instead (__new__)
        if not (image.flags.c_contiguous and image.flags.writeable):
            image = np.array(image, order="C")  # one kernel build for every layout
        self.gaussian: Lattice
        self.bilateral: Lattice
        self.gaussian, self.bilateral = _build(image, gaussian_sxy, bilateral_sxy,
                                               bilateral_srgb, self.threads)
        self._holdings = workspace.Holdings(self, [self.gaussian.lease, self.bilateral.lease])

    def close(self) -> None:
        """Give the lattices back (to the pool or the Gaussian lattice cache): states
        already started keep theirs until they are closed; no new ones can start."""
        self._holdings.close()

    def __enter__(self) -> DenseCRF:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, unary: np.ndarray) -> MeanField:
        """Begin step-wise inference: Q = softmax(-unary), no iteration yet.

        Args:
            unary: (C, H, W) float energies (negative log-probabilities).

        Returns:
            A :class:`MeanField` whose :meth:`MeanField.step` runs iterations; close it
            (or use it in a ``with`` block) to return its buffers at once.
        """
        check_unary(unary, self.height, self.width)
        return self._start(unary.shape, unary=unary)

    def _start(self, shape: tuple[int, int, int], *, unary: np.ndarray | None = None,
               probs: np.ndarray | None = None, fill=None) -> MeanField:
        """start() on a checked unary, on checked probabilities, or on a ``fill`` that
        writes the unary (see :class:`MeanField`)."""
        lattices = [self.gaussian, self.bilateral]
        retained = []
        try:
            for lattice in lattices:
                if self._holdings.closed:
                    raise RuntimeError
                retained.append(lattice.lease.retain())
        except RuntimeError:
            for lease in retained:
                lease.release()
            raise TsegError("DenseCRF: this CRF is closed; create a new one") from None
        return MeanField(shape, lattices, compat=self._compat, threads=self.threads, unary=unary,
                         probs=probs, fill=fill)

    def inference(self, unary: np.ndarray, *, iterations: int = ITERATIONS) -> np.ndarray:
        """Run mean field.

        Args:
            unary: (C, H, W) float energies (negative log-probabilities).
            iterations: number of mean-field iterations, >= 0.

        Returns:
            Q: (C, H, W) float32 marginals, summing to 1 over C (a new array).
        """
        check_iterations(iterations)
        check_unary(unary, self.height, self.width)
        with self._start(unary.shape, unary=unary) as state:
            state.step(iterations)
            return state._write_probs(np.empty(unary.shape, np.float32))


def unary_from_probs(probs: np.ndarray, *, clip: float = 1e-5) -> np.ndarray:
    """Unary energies from class probabilities: ``-log(clip(probs, clip, 1))``.

    Args:
        probs: (C, H, W) float probabilities in [0, 1] (e.g. a softmax).
        clip: smallest probability kept, so that 0 gives a finite energy.

    Returns:
        (C, H, W) float32 energies (a new array).
    """
    probs = check_probs(probs)
    clip = check_open_unit("clip", clip)
    if np.float32(clip) == 0:
        raise TsegError(f"clip: need a value in (0, 1) that float32 can hold (from "
                        f"{np.finfo(np.float32).smallest_subnormal:.3g}), got {clip}")
    return _unary_from_probs(probs, clip, np.empty(probs.shape, np.float32))


def _unary_from_probs(probs: np.ndarray, clip: float, out: np.ndarray) -> np.ndarray:
    """-log(clip(probs, clip, 1)) into ``out`` (C, H, W) float32; checked arguments.
    The log is :func:`dense_crf`'s (:mod:`tseg.runtime.crf.unary`, within 2 ulp of
    NumPy's), except for a subnormal clip."""
    if np.float32(clip) >= np.finfo(np.float32).tiny:
        return _energies(probs, clip, out)
    np.clip(probs, np.float32(clip), np.float32(1.0), out=out)
    np.log(out, out=out)
    return np.negative(out, out=out)


def unary_from_labels(
    labels: np.ndarray,
    *,
    num_classes: int,
    gt_prob: float = 0.7,
    unknown_label: int | None = None,
) -> np.ndarray:
    """Unary energies from hard labels (a label PNG, a submission's masks).

    The given label gets probability ``gt_prob`` and the others share the rest, as
    pydensecrf's ``unary_from_labels(..., zero_unsure=False)``: label 0 is a real class
    here. Pixels equal to ``unknown_label`` (e.g. 255, "void") get a uniform unary.

    Args:
        labels: (H, W) integer labels in [0, num_classes).
        num_classes: number of classes C, >= 2.
        gt_prob: confidence in the given labels, in (0, 1).
        unknown_label: a label value that means "no opinion", or None.

    Returns:
        (C, H, W) float32 energies (a new array).
    """
    num_classes = check_num_classes(num_classes)
    gt_prob = check_open_unit("gt_prob", gt_prob)
    labels = check_labels(labels, num_classes, unknown_label)
    out = np.empty((num_classes, *labels.shape), np.float32)
    return _unary_from_labels(labels, num_classes, gt_prob, unknown_label, out)


def _unary_from_labels(labels: np.ndarray, num_classes: int, gt_prob: float,
                       unknown_label: int | None, out: np.ndarray) -> np.ndarray:
    """unary_from_labels into ``out`` (C, H, W) float32; checked arguments."""
    out.fill(-np.log((1.0 - gt_prob) / (num_classes - 1)))
    known = labels != unknown_label if unknown_label is not None else np.ones(labels.shape, bool)
    rows, cols = np.nonzero(known)
    out[labels[rows, cols], rows, cols] = -np.log(gt_prob)
    if unknown_label is not None:
        out[:, ~known] = -np.log(1.0 / num_classes)
    return out


def dense_crf(
    probs: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: Compat = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: Compat = BILATERAL_COMPAT,
    threads: int | None = None,
    device: str = "cpu",
) -> np.ndarray:
    """Refine class probabilities with a dense CRF (pydensecrf's defaults).

    Args:
        probs: (C, H, W) float probabilities in [0, 1] (e.g. a softmax).
        image: (H, W, 3) uint8 RGB image the probabilities belong to.
        iterations: mean-field iterations, >= 0.
        gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat:
            kernel widths and compatibilities, see :class:`DenseCRF`.
        threads: threads to use; None: every core this process may use.
        device: 'cpu', or 'cuda' (see :class:`DenseCRF`).

    Returns:
        Q: (C, H, W) float32 refined probabilities; ``Q.argmax(0)`` gives labels.
    """
    check_image(image)
    on_cpu = check_device(device) == "cpu"  # there the first pass checks the values
    probs = check_probs(probs, image.shape[0], image.shape[1], values=not on_cpu)
    check_iterations(iterations)
    with DenseCRF(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                  bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                  bilateral_compat=bilateral_compat, threads=threads, device=device) as crf:
        if crf.device == "cuda":
            with crf.start_from_probs(probs, CLIP) as state:
                state.step(iterations)
                return state.probs()
        # -log(clip(probs, 1e-5, 1)) (finite, <= 12) taken by mean field's first pass.
        with crf._start(probs.shape, probs=probs) as state:
            state.step(iterations)
            return state._write_probs(np.empty(probs.shape, np.float32))


def dense_crf_labels(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    num_classes: int,
    gt_prob: float = 0.7,
    unknown_label: int | None = None,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: Compat = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: Compat = BILATERAL_COMPAT,
    threads: int | None = None,
) -> np.ndarray:
    """Refine hard labels (a label PNG, a submission's masks) with a dense CRF.

    Args:
        labels: (H, W) integer labels in [0, num_classes); label 0 is a class.
        image: (H, W, 3) uint8 RGB image.
        num_classes: number of classes C, >= 2.
        gt_prob: confidence in the given labels, in (0, 1).
        unknown_label: a label value that means "no opinion" (uniform unary), or None.
        iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
        bilateral_compat, threads: as in :func:`dense_crf`.

    Returns:
        (H, W) refined labels, same dtype as ``labels``.
    """
    check_image(image)
    num_classes = check_num_classes(num_classes)
    gt_prob = check_open_unit("gt_prob", gt_prob)
    labels = check_labels(labels, num_classes, unknown_label)
    check_iterations(iterations)
    with DenseCRF(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                  bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                  bilateral_compat=bilateral_compat, threads=threads) as crf, \
            workspace.Lease() as lease:
        unary = _unary_from_labels(labels, num_classes, gt_prob, unknown_label,
                                   lease.array((num_classes, *labels.shape)))
        with crf._start(unary.shape, unary=unary) as state:
            state.step(iterations)
            return state.labels().astype(labels.dtype)
