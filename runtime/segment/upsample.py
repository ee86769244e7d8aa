"""From model logits to labels at the image's size, at a cost small next to the model.

:func:`tseg.runtime.scores.labels_from_scores` (resize every class's scores to the
image, then argmax) stays the plain reference; at 512x512 with 12 classes it costs
about twice the model. :func:`upsample_labels` gives the same labels without ever
holding the (C, H, W) scores:

1. argmax at the model's resolution (C * h * w work);
2. each output pixel's bilinear value is a convex combination of the scores at 4
   low-resolution corners. Where all 4 corners have the same argmax ``k``,
   ``s_k >= s_m`` holds at every corner, so it holds for any convex combination:
   the pixel's label is ``k``. Whole cells of the low-resolution grid are resolved
   this way and spread over their block of output pixels by ``np.repeat``;
3. only the pixels of "mixed" cells (class boundaries, a few percent) are computed.
   Inside a cell each class's value lies between its smallest and largest corner
   value, so most cells have just two classes that can win anywhere inside: there the
   sign of the bilinear difference of the two decides. Other mixed cells get all C
   bilinear values with the reference's float32 operations in the reference's order
   (the same values, bit for bit) and their argmax.

Ties: a pixel can differ from the reference only where, in the reference's float32
arithmetic, the top two classes are within float rounding of each other (the
difference of two values is rounded once or twice differently; exact ties go to the
first class, as in ``argmax``). Everywhere else the labels equal the reference's
(tests/runtime/test_postprocess.py checks this with hypothesis). Logits must be finite
(the :class:`~tseg.runtime.segment.segmenter.Segmenter` checks its outputs); a NaN is refused.

Cost (benchmarks/postprocess.py, 12 classes from 256x256, 2 shared cores): 512x512
3.3 ms vs 49 ms for the reference; 4000x3000 49 ms vs 4.9 s.

NumPy only: this module never imports Numba or torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.runtime.scores import _source_grid, argmax_classes, resize_scores, scores_at, softmax

# Boundary pixels are computed in chunks of about this many pixels times classes (memory:
# a few float32 arrays of this many elements).
BOUNDARY_ELEMENTS = 1 << 19


def _check(logits: np.ndarray, size: Sequence[int]) -> tuple[np.ndarray, int, int]:
    """(C, h, w) float32 logits and the output (H, W), or a one-line TsegError."""
    shape = getattr(logits, "shape", None)
    if not isinstance(logits, np.ndarray) or logits.ndim != 3 or min(logits.shape) < 1:
        raise TsegError(f"need (C, h, w) logits with C, h, w >= 1, got shape {shape}")
    if logits.dtype.kind != "f":
        raise TsegError(f"need float logits, got {logits.dtype}")
    if logits.shape[0] > MAX_CLASSES:
        raise TsegError(f"labels hold up to {MAX_CLASSES} classes, got {logits.shape[0]}")
    try:
        height, width = (int(v) for v in size)
        valid = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    except (TypeError, ValueError):
        valid = False
    if not valid or height < 1 or width < 1:
        raise TsegError(f"need an output size (H, W) of integers >= 1, got {size!r}"[:200])
    return np.ascontiguousarray(logits, dtype=np.float32), height, width


def _counts(index: np.ndarray, length: int) -> np.ndarray:
    """How many output pixels take each low-resolution index as their lower tap."""
    return np.bincount(index, minlength=length)


def _mixed_pixels(cells: tuple[np.ndarray, np.ndarray], rows: tuple[np.ndarray, np.ndarray],
                  cols: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Output (row, col) of every pixel of the given low-resolution cells.

    Args:
        cells: (K,) cell rows and (K,) cell columns.
        rows, cols: per low-resolution index, the first output pixel and the pixel count.

    Returns:
        (N,) output rows, (N,) output columns and (N,) index into ``cells`` of each pixel,
        N = sum of the cells' block areas; a cell's pixels are consecutive.
    """
    first_row, row_count = rows[0][cells[0]], rows[1][cells[0]]
    first_col, col_count = cols[0][cells[1]], cols[1][cells[1]]
    areas = row_count * col_count
    total = int(areas.sum())
    cell = np.repeat(np.arange(len(areas)), areas)
    offset = np.arange(total) - np.repeat(np.cumsum(areas) - areas, areas)
    width = col_count[cell]
    return first_row[cell] + offset // width, first_col[cell] + offset % width, cell


def _two_candidates(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells where only two classes can win anywhere inside, and which two.

    Inside a cell each class's bilinear value lies between its smallest and largest corner
    value, so a class whose largest corner value is below some class's smallest one never
    wins there. The margin keeps classes within float rounding of that bound as candidates.

    Args:
        corners: (4, C, K) float32 logits at the 4 corners of K cells.

    Returns:
        (K,) bool: exactly two candidates; (K,) the lower and (K,) the higher candidate class.
    """
    highest, lowest = corners.max(axis=0), corners.min(axis=0)
    floor = lowest.max(axis=0)
    margin = np.float32(1e-5) * (np.abs(highest).max(axis=0) + np.abs(lowest).max(axis=0))
    candidates = highest >= floor - margin
    num_classes = candidates.shape[0]
    first = argmax_classes(candidates.view(np.uint8))
    last = num_classes - 1 - argmax_classes(candidates[::-1].view(np.uint8)).astype(np.int64)
    return candidates.sum(axis=0) == 2, first.astype(np.int64), last


def _pair_argmax(corners: np.ndarray, pair: tuple[np.ndarray, np.ndarray], weights: tuple) -> np.ndarray:
    """Labels at pixels whose cell has two candidate classes.

    The sign of the bilinear difference of the two classes decides; it differs from the
    sign of the reference's difference of bilinear values only within float rounding.

    Args:
        corners: (4, C, K) corner logits (top-left, top-right, bottom-left, bottom-right).
        pair: (K,) lower and (K,) higher candidate class per cell.
        weights: per pixel: (N,) cell index, row weight and its complement, column weight
            and its complement.

    Returns:
        (N,) labels: the lower class where its value is >= the higher's (argmax's first index).
    """
    cell, weight_r, keep_r, weight_c, keep_c = weights
    every = np.arange(corners.shape[2])
    difference = corners[:, pair[0], every] - corners[:, pair[1], every]
    top_left, top_right, bottom_left, bottom_right = difference.take(cell, axis=1)
    left = top_left * keep_r
    left += bottom_left * weight_r
    left *= keep_c
    right = top_right * keep_r
    right += bottom_right * weight_r
    right *= weight_c
    return np.where(left >= -right, pair[0].take(cell), pair[1].take(cell))


def _resolve_cells(out: np.ndarray, flat: np.ndarray, cells: tuple, grid: dict) -> None:
    """Writes the labels of the pixels of mixed cells into ``out``.

    Args:
        out: (H, W) labels, written in place.
        flat: (C, h * w) float32 logits.
        cells: (K,) rows and (K,) columns of mixed cells.
        grid: taps and per-index pixel ranges (see :func:`upsample_labels`).
    """
    low_w, out_w = grid["low_w"], out.shape[1]
    top, bottom = cells[0] * low_w, grid["down"][cells[0]] * low_w
    left, right = cells[1], grid["right"][cells[1]]
    corners = flat.take(np.stack([top + left, top + right, bottom + left, bottom + right]), axis=1)
    corners = corners.transpose(1, 0, 2)  # (4, C, K)
    pair_cells, low, high = _two_candidates(corners)
    for subset in (np.flatnonzero(pair_cells), np.flatnonzero(~pair_cells)):
        if len(subset) == 0:
            continue
        rows, cols, cell = _mixed_pixels((cells[0][subset], cells[1][subset]), grid["rows"], grid["cols"])
        if pair_cells[subset[0]]:
            weights = (cell, grid["wr"].take(rows), grid["kr"].take(rows), grid["wc"].take(cols), grid["kc"].take(cols))
            labels = _pair_argmax(corners[:, :, subset], (low[subset], high[subset]), weights)
        else:
            labels = argmax_classes(scores_at(flat, low_w, grid["taps"], rows, cols))  # the reference's values
        rows *= out_w
        rows += cols
        out.reshape(-1)[rows] = labels


def upsample_labels(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) float logits -> (H, W) labels at ``size``: the argmax of the bilinear
    (align_corners=False) upsampling, without materialising (C, H, W).

    Equal to ``labels_from_scores(logits, size)`` except where two classes tie to float
    rounding (see the module docstring). Also resizes down, and handles 1-pixel sides.
    Pure function, thread-safe; memory O(H * W + C * h * w).

    Args:
        logits: (C, h, w) float logits (or probabilities), finite.
        size: the output (H, W).

    Returns:
        (H, W) uint8 labels (uint16 beyond 256 classes).

    Raises:
        TsegError: bad shapes or sizes, or NaN logits.
    """
    logits, height, width = _check(logits, size)
    num_classes, low_h, low_w = logits.shape
    labels = argmax_classes(logits)
    if (low_h, low_w) == (height, width) or num_classes == 1:
        return labels if num_classes > 1 else np.zeros((height, width), labels.dtype)
    r0, r1, wr = _source_grid(height, low_h)
    c0, c1, wc = _source_grid(width, low_w)
    # A cell (a, b) has corners (a, b), (a, b+1), (a+1, b), (a+1, b+1), clamped at the edges;
    # the upper taps are lower + 1 clamped, so the lower taps alone name a pixel's cell.
    down, right = np.minimum(np.arange(low_h) + 1, low_h - 1), np.minimum(np.arange(low_w) + 1, low_w - 1)
    below = labels[down]
    uniform = (labels == labels[:, right]) & (labels == below) & (labels == below[:, right])
    row_count, col_count = _counts(r0, low_h), _counts(c0, low_w)
    # r0 and c0 never decrease, so repeating cell (a, b) row_count[a] x col_count[b] times is labels[r0][:, c0].
    out = np.repeat(np.repeat(labels, row_count, axis=0), col_count, axis=1)
    cells = np.nonzero(~uniform & (row_count[:, None] > 0) & (col_count[None, :] > 0))
    if len(cells[0]) == 0:
        return out
    flat = logits.reshape(num_classes, low_h * low_w)
    grid = {
        "low_w": low_w, "down": down, "right": right, "taps": (r0, r1, wr, c0, c1, wc),
        "wr": wr, "kr": np.float32(1) - wr, "wc": wc, "kc": np.float32(1) - wc,
        "rows": (np.cumsum(row_count) - row_count, row_count), "cols": (np.cumsum(col_count) - col_count, col_count),
    }
    areas = row_count[cells[0]] * col_count[cells[1]]
    chunk_pixels = max(1, BOUNDARY_ELEMENTS // num_classes)
    bounds = np.searchsorted(np.cumsum(areas), np.arange(chunk_pixels, int(areas.sum()), chunk_pixels))
    for chunk in np.split(np.arange(len(areas)), bounds):
        if len(chunk):
            _resolve_cells(out, flat, (cells[0][chunk], cells[1][chunk]), grid)
    return out


def upsample_probs(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(C, h, w) logits -> (C, H, W) float32 softmax probabilities at ``size``.

    The logits are resized bilinearly (align_corners=False), then softmaxed over C.

    Raises:
        TsegError: bad shapes or sizes.
    """
    logits, height, width = _check(logits, size)
    return softmax(resize_scores(logits, (height, width)))
