"""Class scores, the reference definitions every stage shares: bilinear resize, softmax, argmax.

Logits are upsampled to the image's own size before the argmax, bilinearly and with the
same sampling grid as PyTorch's ``interpolate(..., align_corners=False)``, so training-time
validation and the runtime agree. The CRF, segment/ (whose upsample.py is the fast path to
the same labels), training and export use these; this module needs only errors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tseg.runtime.errors import TsegError

# argmax_classes works on blocks of at most this many values (classes x pixels): its scratch
# memory stays bounded for full-size probabilities (a 12 MP photo's, with TTA or the CRF).
ARGMAX_BLOCK = 1 << 20


def _source_grid(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: lower index, upper index, upper weight."""
    scale = in_len / out_len
    src = np.maximum((np.arange(out_len, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    lower = np.minimum(src.astype(np.int64), in_len - 1)
    upper = np.minimum(lower + 1, in_len - 1)
    return lower, upper, (src - lower).astype(np.float32)


def _lerp(low: np.ndarray, high: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``low * (1 - weight) + high * weight`` in float32: bilinear's one step, the same
    operations in the same order wherever it is taken (so the values agree bit for bit)."""
    return low * (np.float32(1) - weight) + high * weight


def _check_scores(scores: object, *, ndim: int | None = 3) -> np.ndarray:
    """``scores`` as an array with every axis non-empty ((C, h, w) when ``ndim`` is 3); a TsegError otherwise."""
    try:
        array = np.asarray(scores)
        if array.dtype.kind not in "fiub":
            array = array.astype(np.float32)
    except (TypeError, ValueError):
        raise TsegError(f"scores: need a numeric array, got {type(scores).__name__}", parameter="scores") from None
    if (ndim is not None and array.ndim != ndim) or array.ndim < 1 or 0 in array.shape:
        need = "(C, h, w)" if ndim == 3 else "(C, ...)"
        raise TsegError(f"scores: need a non-empty {need} array, got shape {array.shape}", parameter="scores")
    return array


def _check_size(size: object) -> tuple[int, int]:
    """(H, W) as two positive integers; a TsegError otherwise."""
    try:
        height, width = (int(side) for side in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TsegError(f"size: need (height, width), got {size!r:.40}", parameter="size") from None
    if height < 1 or width < 1:
        raise TsegError(f"size: need positive (height, width), got {size!r:.40}", parameter="size")
    return height, width


def resize_scores(scores: np.ndarray, size: Sequence[int], *, rows: slice | None = None) -> np.ndarray:
    """Bilinearly resizes per-class scores (align_corners=False): the runtime's one upsampling.

    Args:
        scores: (C, h, w) float logits or probabilities.
        size: target (H, W).
        rows: only these output rows (a band), e.g. ``slice(0, 128)``; None: all.

    Returns:
        (C, H, W) float32 (or the band's rows of it).

    Raises:
        TsegError: ``scores`` is not a non-empty (C, h, w) array, or ``size`` not two positive integers.
    """
    height, width = _check_size(size)
    scores = np.asarray(_check_scores(scores), dtype=np.float32)
    band = slice(None) if rows is None else rows
    if scores.shape[1:] == (height, width):
        return scores if rows is None else scores[:, band]
    r0, r1, wr = _source_grid(height, scores.shape[1])
    c0, c1, wc = _source_grid(width, scores.shape[2])
    resized = _lerp(scores[:, r0[band]], scores[:, r1[band]], wr[band][None, :, None])
    return _lerp(resized[:, :, c0], resized[:, :, c1], wc)


def scores_at(flat: np.ndarray, low_w: int, taps: tuple, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The values :func:`resize_scores` gives at chosen output pixels, bit for bit, without the grid.

    Args:
        flat: (C, h * w) float32 scores.
        low_w: w.
        taps: (r0, r1, wr, c0, c1, wc), :func:`_source_grid` along each axis.
        rows, cols: (N,) output pixel coordinates.

    Returns:
        (C, N) float32.
    """
    r0, r1, wr, c0, c1, wc = taps
    top, bottom, weight_r = r0[rows] * low_w, r1[rows] * low_w, wr[rows]
    left, right = c0[cols], c1[cols]
    at_left = _lerp(flat.take(top + left, axis=1), flat.take(bottom + left, axis=1), weight_r)
    at_right = _lerp(flat.take(top + right, axis=1), flat.take(bottom + right, axis=1), weight_r)
    return _lerp(at_left, at_right, wc[cols])


def softmax(scores: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax over ``axis`` (float32)."""
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=axis, keepdims=True)


def label_dtype(num_classes: int) -> type[np.unsignedinteger]:
    """uint8 labels up to 256 classes, uint16 beyond."""
    return np.uint8 if num_classes <= 256 else np.uint16


def argmax_classes(scores: np.ndarray, *, strict: bool = True) -> np.ndarray:
    """Argmax over axis 0 (first index among equal values), faster than ``argmax(axis=0)``: the one argmax.

    Args:
        scores: (C, ...) logits or probabilities, e.g. (C, h, w) or (C, N).
        strict: refuse NaN and infinite maxima. False: a block holding them takes NumPy's
            ``argmax`` (NaN counts as the largest), for callers that judge non-finite
            scores themselves (training's validation, tseg-export's parity cases).

    Returns:
        (...) uint8 labels (uint16 beyond 256 classes); equal to ``scores.argmax(axis=0)``.

    Raises:
        TsegError: ``scores`` is empty; with ``strict``, a NaN in ``scores`` or a pixel whose
            largest value is infinite.
    """
    scores = _check_scores(scores, ndim=None)
    if scores.ndim < 2 or scores.size <= ARGMAX_BLOCK:
        return _argmax_block(scores, strict)
    out = np.empty(scores.shape[1:], label_dtype(scores.shape[0]))
    step = max(1, ARGMAX_BLOCK // (scores.size // scores.shape[1]))
    for start in range(0, scores.shape[1], step):
        out[start:start + step] = _argmax_block(scores[:, start:start + step], strict)
    return out


def _argmax_block(scores: np.ndarray, strict: bool) -> np.ndarray:
    num_classes = scores.shape[0]
    # C - max_c((C - c) * [x_c == max]) is the first c reaching the max. Reductions over
    # the leading axis are elementwise across (h, w) planes: vectorised, unlike argmax(0).
    wide = np.uint8 if num_classes < 256 else np.uint32
    best = scores.max(axis=0)
    # NaN and +inf propagate into the per-pixel max, so this one small check (1/C of the
    # data) stands in for a full isfinite pass over the scores.
    if best.dtype.kind == "f" and not np.isfinite(best).all():
        if not strict:
            return scores.argmax(axis=0).astype(label_dtype(num_classes))
        raise TsegError("the model gave NaN or infinite scores: cannot take their argmax")
    hits = np.equal(scores, best).view(np.uint8).astype(wide, copy=wide is not np.uint8)
    np.multiply(hits, np.arange(num_classes, 0, -1, dtype=wide).reshape((-1,) + (1,) * (scores.ndim - 1)), out=hits)
    first = hits.max(axis=0)
    if first.min() == 0:  # no class equals the max: NaN
        raise TsegError("the logits contain NaN: cannot take their argmax")
    np.subtract(wide(num_classes), first, out=first)
    return first.astype(label_dtype(num_classes), copy=False)


def labels_from_scores(scores: np.ndarray, size: Sequence[int] | None = None) -> np.ndarray:
    """Argmax over classes, after resizing the scores to ``size`` (H, W) if given: the plain reference.

    Args:
        scores: (C, h, w) logits or probabilities (NaN counts as the largest, as in NumPy).
        size: the output (H, W); None keeps (h, w).

    Returns:
        (H, W) uint8 labels (uint16 beyond 256 classes).
    """
    if size is not None:
        scores = resize_scores(scores, size)
    return argmax_classes(scores, strict=False)
