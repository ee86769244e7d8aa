"""Unaries for mean field's pixel-major buffer, with no (C, H, W) array.

- from probabilities (``dense_crf``), pydensecrf's ``-log(clip(p, 1e-5, 1))`` is taken by
  the first pixel pass itself (:func:`tseg.runtime.crf.meanfield.pixel_pass`), 8 pixels'
  classes transposed in registers and the log taken in vector groups
  (:func:`unary_from_probs` gives the same energies as an array);
- :func:`logits_fill`: from a model's logits at any resolution (``labels_from_logits``):
  per pixel, the bilinear taps of :func:`tseg.runtime.scores.resize_scores` (the same
  float32 operations in the same order), a log-softmax and the clip:
  ``max(v - max(v) - log(sum(exp(v - max(v)))), log(1e-5))``, which is
  ``log(clip(softmax(v), 1e-5, 1))`` up to float rounding (no exp then log round trip).

It returns ``fill(base, threads)`` for :class:`tseg.runtime.crf.state.MeanField`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel, simd, vecmath, workspace
from tseg.runtime.scores import _source_grid

CLIP = 1e-5  # pydensecrf's unary_from_softmax clip, as dense_crf's
_HUGE = np.float32(3.4028235e38)
_PAD = np.float32(-1e30)  # padded lanes of the logits: exp gives 0, sums stay finite


@njit(cache=True, nogil=True)
def _blend_rows(blended, rows, upper, lower, a, groups):
    """blended[c] = (1 - a) * rows[upper + c] + a * rows[lower + c] for every source column c
    (the lerp and its operation order are resize_scores')."""
    one = np.float32(1.0)
    for c in range(blended.shape[0]):
        for lane in range(0, simd.LANES * len(groups), simd.LANES):
            vecmath.lerp(blended, c, rows, upper + c, rows, lower + c, one - a, a, lane)


@njit(cache=True, nogil=True, error_model="numpy")
def base_from_logits(base, rows, num_classes, low_w, r0, r1, wr, c0, c1, wc, log_clip, groups,
                     start, stop):
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
        groups: :func:`tseg.runtime.crf.simd.lane_groups` of the lanes.
    """
    lanes = simd.LANES * len(groups)
    width = wc.shape[0]
    # A vector's worth of pixels go through each step together (their chains of max, exp
    # and sum are independent, so the CPU overlaps them) and share one log.
    x = np.empty((simd.LANES, lanes), np.float32)
    # The output row's source rows blended, per source column: resize_scores's first
    # step, shared by the output pixels between two source columns.
    blended = np.empty((low_w, lanes), np.float32)
    top = np.empty(simd.LANES, np.float32)
    logs = np.ones((1, simd.LANES), np.float32)  # the sums of exp, then their logs
    one = np.float32(1.0)
    y = start // width
    col = start - y * width
    _blend_rows(blended, rows, r0[y] * low_w, r1[y] * low_w, wr[y], groups)
    for p0 in range(start, stop, simd.LANES):
        count = min(simd.LANES, stop - p0)
        for b in range(count):
            if col == width:  # no division per pixel
                col = 0
                y += 1
                _blend_rows(blended, rows, r0[y] * low_w, r1[y] * low_w, wr[y], groups)
            left, right, w = c0[col], c1[col], wc[col]
            col += 1
            top[b] = -_HUGE
            for lane in range(0, lanes, simd.LANES):  # resize_scores: rows, then columns
                vecmath.lerp(x, b, blended, left, blended, right, one - w, w, lane)
                simd.copy(base, p0 + b, x, b, lane)
                top[b] = max(top[b], simd.group_max(x, b, lane))
        for b in range(count):
            logs[0, b] = np.float32(0.0)
            for lane in range(0, lanes, simd.LANES):
                logs[0, b] += simd.exp_shifted(x, b, lane, top[b])
        vecmath.log(logs, 0, 0)
        for b in range(count):
            for lane in range(0, lanes, simd.LANES):  # (v - max) - log(sum(exp(v - max)))
                vecmath.log_softmax_clip(base, p0 + b, lane, top[b], logs[0, b], log_clip,
                                         num_classes)


@njit(cache=True, nogil=True)
def neg_log_clip(src, dst, clip, start, stop):
    """dst[r] = -log(clip(src[r], clip, 1)) for rows r in [start, stop) of (R, LANES)
    views: the energies whose negation the first pixel pass takes from probabilities."""
    for r in range(start, stop):
        simd.copy(dst, r, src, r, 0)
        vecmath.log_clip(dst, r, 0, clip, simd.LANES)
        for k in range(simd.LANES):
            dst[r, k] = -dst[r, k]


def unary_from_probs(probs: np.ndarray, clip: float, out: np.ndarray) -> np.ndarray:
    """-log(clip(probs, clip, 1)) into ``out`` (C, H, W) float32 with the log that
    the first pixel pass takes, so that ``dense_crf(probs)`` equals
    ``DenseCRF.inference(unary_from_probs(probs))`` bit for bit. Checked arguments,
    ``clip`` a normal float32."""
    flat = np.ascontiguousarray(probs, np.float32).reshape(-1)
    dst = out.reshape(-1)
    rows = flat.shape[0] // simd.LANES
    body = rows * simd.LANES
    if rows:
        parallel.run([(neg_log_clip, (flat[:body].reshape(rows, simd.LANES),
                                      dst[:body].reshape(rows, simd.LANES), np.float32(clip)),
                       rows)], 1)
    if body < flat.shape[0]:  # the tail, in a padded row
        tail = np.ones((1, simd.LANES), np.float32)
        tail[0, :flat.shape[0] - body] = flat[body:]
        neg_log_clip(tail, tail, np.float32(clip), 0, 1)
        dst[body:] = tail[0, :flat.shape[0] - body]
    return out


@njit(cache=True, nogil=True)
def pixel_major(rows, logits, num_classes, groups, start, stop):
    """rows[p] = the classes of source pixel p of label-first ``logits`` (C, n) float32,
    padded lanes _PAD, for p in [start, stop): 8 pixels at a time by transposes in
    registers (NumPy's strided copy of the transpose took 0.8 ms for 256 x 256 logits)."""
    lanes = simd.LANES * len(groups)
    x = np.empty((vecmath.COLUMNS, lanes), np.float32)
    p0 = start
    while p0 + vecmath.COLUMNS <= stop:
        for lane in range(0, lanes, simd.LANES):
            vecmath.columns(x, logits, p0, lane, num_classes, _PAD)
        for b in range(vecmath.COLUMNS):
            for lane in range(0, lanes, simd.LANES):
                simd.copy(rows, p0 + b, x, b, lane)
        p0 += vecmath.COLUMNS
    for p in range(p0, stop):
        for k in range(lanes):
            rows[p, k] = logits[k, p] if k < num_classes else _PAD


def usable_as_is(x: np.ndarray) -> bool:
    """Whether the kernels can read ``x`` directly: native float32, C order, aligned,
    writeable (a read-only array would make Numba compile every kernel again)."""
    return (x.dtype == np.dtype(np.float32) and x.flags.c_contiguous and x.flags.aligned
            and x.flags.writeable)


def logits_fill(logits: np.ndarray, height: int, width: int):
    """fill(base, threads) for :class:`~tseg.runtime.crf.state.MeanField`."""
    num_classes, low_h, low_w = logits.shape
    r0, r1, wr = _source_grid(height, low_h)
    c0, c1, wc = _source_grid(width, low_w)
    log_clip = np.log(np.float32(CLIP))

    def fill(base: np.ndarray, threads: int) -> None:
        groups = simd.lane_groups(base.shape[1])
        with workspace.Lease() as lease:
            rows = lease.array((low_h * low_w, base.shape[1]))
            label_first = logits.reshape(num_classes, -1)
            if not usable_as_is(label_first):  # any other layout or dtype: one copy
                label_first = np.array(label_first, np.float32, order="C")
            parallel.run([(pixel_major, (rows, label_first, num_classes, groups), rows.shape[0])],
                         threads)
            args = (base, rows, num_classes, low_w, r0, r1, wr, c0, c1, wc, log_clip, groups)
            parallel.run([(base_from_logits, args, height * width)], threads)
    return fill
