"""The dense CRF from a model's logits to labels, with no (C, H, W) array in between.

``labels_from_logits(logits, image)`` gives what ``dense_crf(softmax(resize_scores(logits,
(H, W))), image).argmax(0)`` gives, without that chain's four full-size temporaries:

- the unary is written straight into mean field's pixel-major buffer by one parallel
  pass (:func:`base_from_logits`): per pixel, the bilinear taps of
  :func:`tseg.runtime.scores.resize_scores` (the same float32 operations in the same
  order), a log-softmax and pydensecrf's clip of the probabilities at 1e-5:
  ``-unary = max(v - max(v) - log(sum(exp(v - max(v)))), log(1e-5))``, which is
  ``log(clip(softmax(v), 1e-5, 1))`` up to float rounding (no exp then log round trip);
- the labels come from the last pass over the pixels (the argmax of Q in registers,
  first of equal values), Q is never written.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel, simd, workspace
from tseg.runtime.crf.checks import Compat, _value_range, check_float_array, check_iterations
from tseg.runtime.crf.dense import DenseCRF
from tseg.runtime.crf.parameters import (
    BILATERAL_COMPAT,
    BILATERAL_SRGB,
    BILATERAL_SXY,
    GAUSSIAN_COMPAT,
    GAUSSIAN_SXY,
    ITERATIONS,
)
from tseg.runtime.errors import TsegError
from tseg.runtime.images import check_image
from tseg.runtime.scores import _source_grid, label_dtype

CLIP = 1e-5  # pydensecrf's unary_from_softmax clip, as dense_crf's
_HUGE = np.float32(3.4028235e38)
_PAD = np.float32(-1e30)  # padded lanes of the logits: exp gives 0, sums stay finite


@njit(cache=True, nogil=True, error_model="numpy")
def base_from_logits(base, rows, num_classes, low_w, r0, r1, wr, c0, c1, wc, log_clip, start,
                     stop):
    """base[p] = -unary of pixels p in [start, stop): the logits resized bilinearly to
    the pixel, log-softmaxed, clipped below at log_clip; padded lanes -huge.

    Args:
        base: (H * W, lanes) float32, mean field's pixel-major -unary.
        rows: (h * w, lanes) float32, the logits at the model's resolution, pixel-major,
            padded lanes -1e30 (finite, so that the bilinear sums stay finite).
        num_classes: C, the lanes in use.
        low_w: w.
        r0, r1, wr: per output row, the upper and lower source rows and the weight of
            the lower (:func:`tseg.runtime.scores._source_grid`); c0, c1, wc per column.
        log_clip: float32 log of the smallest probability kept.
    """
    lanes = base.shape[1]
    width = wc.shape[0]
    x = np.empty((3, lanes), np.float32)
    one = np.float32(1.0)
    y = start // width
    col = start - y * width
    for p in range(start, stop):
        if col == width:  # no division per pixel
            col = 0
            y += 1
        top, bottom, a = r0[y] * low_w, r1[y] * low_w, wr[y]
        left, right, b = c0[col], c1[col], wc[col]
        col += 1
        top_v = -_HUGE
        for lane in range(0, lanes, simd.LANES):  # resize_scores: rows first, then columns
            simd.lerp(x, 0, rows, top + left, rows, bottom + left, one - a, a, lane)
            simd.lerp(x, 1, rows, top + right, rows, bottom + right, one - a, a, lane)
            simd.lerp(base, p, x, 0, x, 1, one - b, b, lane)
            simd.copy(x, 2, base, p, lane)
            top_v = max(top_v, simd.group_max(x, 2, lane))
        total = np.float32(0.0)
        for lane in range(0, lanes, simd.LANES):
            total += simd.exp_shifted(x, 2, lane, top_v)
        for lane in range(0, lanes, simd.LANES):  # (v - max) - log(sum(exp(v - max)))
            simd.log_softmax_clip(base, p, lane, top_v, total, log_clip, num_classes)


def _fill(logits: np.ndarray, height: int, width: int):
    """fill(base, threads) for :class:`~tseg.runtime.crf.state.MeanField`."""
    num_classes, low_h, low_w = logits.shape
    r0, r1, wr = _source_grid(height, low_h)
    c0, c1, wc = _source_grid(width, low_w)
    log_clip = np.log(np.float32(CLIP))

    def fill(base: np.ndarray, threads: int) -> None:
        with workspace.Lease() as lease:
            rows = lease.array((low_h * low_w, base.shape[1]))
            rows[:, num_classes:] = _PAD
            rows[:, :num_classes] = logits.reshape(num_classes, -1).T
            args = (base, rows, num_classes, low_w, r0, r1, wr, c0, c1, wc, log_clip)
            parallel.run([(base_from_logits, args, height * width)], threads)
    return fill


def check_logits(logits: object) -> np.ndarray:
    """(C, h, w) float logits, C >= 2, finite; a one-line error otherwise."""
    logits = check_float_array("logits", logits, "(C, h, w)")
    if logits.shape[0] < 2:
        raise TsegError(f"logits: need at least 2 classes, got shape {logits.shape}")
    _value_range("logits", logits)
    return logits


def labels_from_logits(
    logits: np.ndarray,
    image: np.ndarray,
    *,
    iterations: int = ITERATIONS,
    gaussian_sxy: float = GAUSSIAN_SXY,
    gaussian_compat: Compat = GAUSSIAN_COMPAT,
    bilateral_sxy: float = BILATERAL_SXY,
    bilateral_srgb: float = BILATERAL_SRGB,
    bilateral_compat: Compat = BILATERAL_COMPAT,
    threads: int | None = None,
) -> np.ndarray:
    """CRF labels from a model's logits at any resolution (resized bilinearly inside).

    The same labels as ``dense_crf(softmax(resize_scores(logits, (H, W))), image)``'s
    argmax up to float rounding (module docstring), faster and with less memory.

    Args:
        logits: (C, h, w) float logits, e.g. a model's output (h, w need not be H, W).
        image: (H, W, 3) uint8 RGB image.
        iterations, gaussian_sxy, gaussian_compat, bilateral_sxy, bilateral_srgb,
        bilateral_compat, threads: as in :func:`tseg.runtime.crf.dense_crf`.

    Returns:
        (H, W) labels, uint8 (uint16 beyond 256 classes).
    """
    check_image(image)
    logits = check_logits(logits)
    check_iterations(iterations)
    height, width = image.shape[:2]
    shape = (logits.shape[0], height, width)
    with DenseCRF(image, gaussian_sxy=gaussian_sxy, gaussian_compat=gaussian_compat,
                  bilateral_sxy=bilateral_sxy, bilateral_srgb=bilateral_srgb,
                  bilateral_compat=bilateral_compat, threads=threads) as crf:
        placeholder = np.broadcast_to(np.float32(0), shape)  # read for its shape only
        with crf._start(placeholder, fill=_fill(logits, height, width)) as state:
            state.step(iterations)
            return state._write_labels(np.empty((height, width), label_dtype(shape[0])))
