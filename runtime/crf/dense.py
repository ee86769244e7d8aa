"""Fully connected CRF (Kraehenbuehl & Koltun 2011) with mean-field inference.

The model and its numbers follow pydensecrf (DenseCRF2D with a Gaussian and a
bilateral kernel, symmetric normalisation): https://arxiv.org/abs/1210.5644.
Arrays at this boundary are label-first like the rest of tseg: probabilities and
unaries (C, H, W), images (H, W, 3) uint8.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from tseg.runtime.crf import meanfield, parallel, workspace
from tseg.runtime.crf.checks import (
    Compat,
    check_compat,
    check_image,
    check_iterations,
    check_labels,
    check_num_classes,
    check_open_unit,
    check_positive,
    check_probs,
    check_threads,
    check_unary,
)
from tseg.runtime.crf.features import pixel_features
from tseg.runtime.crf.lattice import Lattice, build_lattices

_gaussian_cache: OrderedDict[tuple, Lattice] = OrderedDict()
_gaussian_cache_lock = threading.Lock()
_GAUSSIAN_CACHE_BYTES = 128 * 2**20


def _build(image: np.ndarray, gaussian_sxy: float, bilateral_sxy: float,
           bilateral_srgb: float, threads: int) -> tuple[Lattice, Lattice]:
    """Both lattices of an image. The Gaussian one depends on the image size and sxy
    alone, so images of one size (a dataset, a video) share it: the last few are kept."""
    height, width = image.shape[:2]
    key = (height, width, float(np.float32(gaussian_sxy)))
    with _gaussian_cache_lock:
        gaussian = _gaussian_cache.get(key)
        if gaussian is not None:
            _gaussian_cache.move_to_end(key)
    features = [pixel_features(image, sxy=bilateral_sxy, srgb=bilateral_srgb, threads=threads)]
    if gaussian is None:  # built side by side with the bilateral one
        features.insert(0, pixel_features(image, sxy=gaussian_sxy, srgb=None, threads=threads))
    built = build_lattices(features, height * width, threads)
    if gaussian is None:
        gaussian = built[0]
        _remember(key, gaussian)
    return gaussian, built[-1]


def _remember(key: tuple, lattice: Lattice) -> None:
    # Shared between DenseCRF objects from now on: nothing writes lattices after the
    # build (read-only flags would make Numba compile every kernel a second time).
    with _gaussian_cache_lock:
        _gaussian_cache[key] = lattice
        total = sum(lat.nbytes for lat in _gaussian_cache.values())
        while len(_gaussian_cache) > 2 or (total > _GAUSSIAN_CACHE_BYTES and
                                           len(_gaussian_cache) > 1):
            total -= _gaussian_cache.popitem(last=False)[1].nbytes
        if total > _GAUSSIAN_CACHE_BYTES:  # a single huge image: keep nothing
            _gaussian_cache.clear()


class DenseCRF:
    """Dense CRF over one image: the lattices are built once, inference runs per unary.

    Pairwise energy: a Gaussian kernel on position (smoothness) and a bilateral kernel
    on position and colour (appearance), each with symmetric normalisation. A scalar
    compat ``w`` is pydensecrf's Potts model (it adds ``w * K~Q`` to the logits, i.e. it
    equals the matrix ``-w * I``); a (C,) vector or (C, C) matrix ``M`` subtracts
    ``M @ K~Q`` (a matrix is symmetrised as ``(M + M.T) / 2``), as pydensecrf does.

    Args:
        image: (H, W, 3) uint8 RGB image.
        gaussian_sxy: Gaussian kernel width in pixels.
        gaussian_compat: Gaussian compatibility: scalar, (C,) or (C, C).
        bilateral_sxy: bilateral kernel width in pixels.
        bilateral_srgb: bilateral kernel width in colour levels.
        bilateral_compat: bilateral compatibility: scalar, (C,) or (C, C).
        threads: threads for lattice building and inference; None: every core this
            process may use.

    Example:
        >>> crf = DenseCRF(image)
        >>> q = crf.inference(unary_from_probs(probs), iterations=5)
    """

    def __init__(
        self,
        image: np.ndarray,
        *,
        gaussian_sxy: float = 3.0,
        gaussian_compat: Compat = 3.0,
        bilateral_sxy: float = 80.0,
        bilateral_srgb: float = 13.0,
        bilateral_compat: Compat = 10.0,
        threads: int | None = None,
    ) -> None:
        check_image(image)
        for name, value in (("gaussian_sxy", gaussian_sxy), ("bilateral_sxy", bilateral_sxy),
                            ("bilateral_srgb", bilateral_srgb)):
            check_positive(name, value)
        # Fail on a malformed compat now, not at the first inference.
        check_compat("gaussian_compat", gaussian_compat, None)
        check_compat("bilateral_compat", bilateral_compat, None)
        self.height, self.width = image.shape[:2]
        # Copies: a caller mutating its array later must not change this CRF.
        self._compat = tuple(c if np.isscalar(c) else np.array(c, np.float32)
                             for c in (gaussian_compat, bilateral_compat))
        self.threads = check_threads(threads)
        self.gaussian: Lattice
        self.bilateral: Lattice
        self.gaussian, self.bilateral = _build(image, gaussian_sxy, bilateral_sxy,
                                               bilateral_srgb, self.threads)

    def start(self, unary: np.ndarray) -> MeanField:
        """Begin step-wise inference: Q = softmax(-unary), no iteration yet.

        Args:
            unary: (C, H, W) float energies (negative log-probabilities).

        Returns:
            A :class:`MeanField` whose :meth:`MeanField.step` runs iterations.
        """
        check_unary(unary, self.height, self.width)
        return MeanField(self, unary)

    def inference(self, unary: np.ndarray, *, iterations: int = 5) -> np.ndarray:
        """Run mean field.

        Args:
            unary: (C, H, W) float energies (negative log-probabilities).
            iterations: number of mean-field iterations, >= 0.

        Returns:
            Q: (C, H, W) float32 marginals, summing to 1 over C.
        """
        check_iterations(iterations)
        state = self.start(unary)
        state.step(iterations)
        return state._current_q().reshape(unary.shape)  # no copy: the state goes


class _Kernel:
    """One pairwise kernel's state in mean field: its lattice, gain and buffers."""

    def __init__(self, lattice: Lattice, compat_name: str, compat: Compat, num_classes: int,
                 lanes: int, threads: int) -> None:
        matrix, self.diagonal = check_compat(compat_name, compat, num_classes)
        # Row j: what label j's message adds to each label's logits: -compat^T,
        # times the slice's alpha (the lattice leaves it out).
        self.gain = np.zeros((lanes, lanes), np.float32)
        scaled = -matrix.T * np.float32(lattice.alpha)
        if self.diagonal:
            self.gain[0, :num_classes] = np.diag(scaled)
        else:
            self.gain[:num_classes, :num_classes] = scaled
        self.lattice = lattice
        rows = lattice.num_vertices + 1  # row 0 stands for a missing blur neighbour
        self.values = workspace.array((rows, lanes))
        self.scratch = workspace.array((rows, lanes))
        self.values[0] = self.scratch[0] = 0
        # Task t splats vertex rows lo..hi (those its pixels touch) into accumulator rows
        # from base on: (T, 3) [lo, hi, base].
        lo, hi = lattice.task_rows[:, 0], lattice.task_rows[:, 1]
        sizes = hi - lo + 1
        self.ranges = np.stack([lo, hi, np.cumsum(sizes) - sizes], axis=1).astype(np.int64)
        self.accs = workspace.array((int(sizes.sum()), lanes), zero=True, threads=threads)
        self.messages = self.values  # the blurred buffer the next pixel pass reads


class MeanField:
    """Mean-field state of one unary on a :class:`DenseCRF` (see ``DenseCRF.start``).

    Passes are lazy: a pass over the pixels computes Q from the previous messages and
    splats it for the next iteration, and Q itself is written out only when asked for.
    """

    def __init__(self, crf: DenseCRF, unary: np.ndarray) -> None:
        num_classes = unary.shape[0]
        n = crf.height * crf.width
        self._crf = crf
        self._shape = unary.shape
        lanes = meanfield.padded_labels(num_classes)
        threads = crf.threads
        # Pixels are split into contiguous ranges, each splatting into its own
        # accumulators, fixed by the image size so threads do not change the sums.
        self._bounds = meanfield.task_bounds(n)
        self._base = workspace.array((n, lanes))  # filled by the first pass
        self._unary = np.ascontiguousarray(unary.reshape(num_classes, n), np.float32)
        # Pooled, though it may go to the caller: reused only once every view is gone.
        self._q = workspace.array((num_classes, n))
        self._no_output = np.empty((num_classes, 0), np.float32)
        self._kernels = [_Kernel(crf.gaussian, "gaussian_compat", crf._compat[0], num_classes,
                                 lanes, threads),
                         _Kernel(crf.bilateral, "bilateral_compat", crf._compat[1], num_classes,
                                 lanes, threads)]
        self._splatted = False  # the accumulators hold the splat of the current Q
        self._q_written = False  # self._q holds the current Q
        self.iterations = 0

    def _pixel_jobs(self, q_out: np.ndarray) -> list:
        g, b = self._kernels
        jobs = []
        for t in range(len(self._bounds) - 1):
            first, count = self._bounds[t], self._bounds[t + 1] - self._bounds[t]
            shifts = [k.ranges[t, 2] - k.ranges[t, 0] for k in (g, b)]
            args = (self._base, self._unary, g.lattice.offsets, g.lattice.weights,
                    g.messages, b.lattice.offsets, b.lattice.weights, b.messages,
                    self.iterations > 0, g.accs, shifts[0], b.accs, shifts[1], q_out, first)
            jobs.append((meanfield.pixel_pass, args, count, count))  # one chunk per task
        return jobs

    def _splat_pass(self) -> None:
        """Splat the current Q (computed from the previous messages) for the next step."""
        parallel.run(self._pixel_jobs(self._no_output), self._crf.threads)
        self._splatted = True

    def _output_pass(self) -> None:
        """Write the current Q."""
        parallel.run(self._pixel_jobs(self._q), self._crf.threads)
        self._q_written = True

    def _messages(self) -> None:
        """Gather the splats, apply the compatibilities, blur: the next pass's input."""
        blurred = meanfield.messages([(k.values, k.scratch, k.accs, k.ranges, k.gain, k.diagonal,
                                       k.lattice.neighbours) for k in self._kernels],
                                     self._crf.threads)
        for kernel, result in zip(self._kernels, blurred, strict=True):
            kernel.messages = result  # read by pixel passes until the next gather
        self._splatted = False

    def step(self, iterations: int = 1) -> None:
        """Run ``iterations`` more mean-field iterations in place."""
        check_iterations(iterations)
        for _ in range(iterations):
            if not self._splatted:
                self._splat_pass()
            self._messages()
            self.iterations += 1
            self._q_written = False
        # Q is written (and splatted) only when asked for: probs(), labels(), step().

    def _current_q(self) -> np.ndarray:
        if not self._q_written:
            self._output_pass()
        return self._q

    def probs(self) -> np.ndarray:
        """Current marginals Q, (C, H, W) float32 (a copy)."""
        return self._current_q().reshape(self._shape).copy()

    def labels(self) -> np.ndarray:
        """Current MAP labels, (H, W) int64: argmax of Q over C."""
        return self._current_q().argmax(axis=0).reshape(self._shape[1:])


def unary_from_probs(probs: np.ndarray, *, clip: float = 1e-5) -> np.ndarray:
    """Unary energies from class probabilities: ``-log(clip(probs, clip, 1))``.

    Args:
        probs: (C, H, W) float probabilities in [0, 1] (e.g. a softmax).
        clip: smallest probability kept, so that 0 gives a finite energy.

    Returns:
        (C, H, W) float32 energies.
    """
    probs = check_probs(probs)
    check_open_unit("clip", clip)
    unary = workspace.array(probs.shape)  # pooled: no fresh pages for a 512 px softmax
    np.clip(probs, np.float32(clip), np.float32(1.0), out=unary)
    np.log(unary, out=unary)
    return np.negative(unary, out=unary)


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
        (C, H, W) float32 energies.
    """
    num_classes = check_num_classes(num_classes)
    gt_prob = check_open_unit("gt_prob", gt_prob)
    labels = check_labels(labels, num_classes, unknown_label)
    other = -np.log((1.0 - gt_prob) / (num_classes - 1))
    unary = np.full((num_classes, *labels.shape), other, np.float32)
    known = labels != unknown_label if unknown_label is not None else np.ones(labels.shape, bool)
    rows, cols = np.nonzero(known)
    unary[labels[rows, cols], rows, cols] = -np.log(gt_prob)
    if unknown_label is not None:
        unary[:, ~known] = -np.log(1.0 / num_classes)
    return unary


def dense_crf(
    probs: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_compat: Compat = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: Compat = 10.0,
    threads: int | None = None,
) -> np.ndarray:
    """Refine class probabilities with a dense CRF (pydensecrf's defaults).

    Args:
        probs: (C, H, W) float probabilities in [0, 1] (e.g. a softmax).
        image: (H, W, 3) uint8 RGB image the probabilities belong to.
        iterations: mean-field iterations, >= 0.
        gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb, bilateral_compat:
            kernel widths and compatibilities, see :class:`DenseCRF`.
        threads: threads to use; None: every core this process may use.

    Returns:
        Q: (C, H, W) float32 refined probabilities; ``Q.argmax(0)`` gives labels.
    """
    check_image(image)
    check_probs(probs, image.shape[0], image.shape[1])
    check_iterations(iterations)
    crf = DenseCRF(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                   bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                   bilateral_compat=bilateral_compat, threads=threads)
    return crf.inference(unary_from_probs(probs), iterations=iterations)


def dense_crf_labels(
    labels: np.ndarray,
    image: np.ndarray,
    *,
    num_classes: int,
    gt_prob: float = 0.7,
    unknown_label: int | None = None,
    iterations: int = 5,
    gaussian_sxy: float = 3.0,
    gaussian_compat: Compat = 3.0,
    bilateral_sxy: float = 80.0,
    bilateral_srgb: float = 13.0,
    bilateral_compat: Compat = 10.0,
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
    unary = unary_from_labels(labels, num_classes=num_classes, gt_prob=gt_prob,
                              unknown_label=unknown_label)
    check_iterations(iterations)
    crf = DenseCRF(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                   bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                   bilateral_compat=bilateral_compat, threads=threads)
    state = crf.start(unary)
    state.step(iterations)
    return state.labels().astype(labels.dtype)
