"""From model logits to label maps and the files users keep.

Logits are upsampled to the image's own size before the argmax, bilinearly
and with the same sampling grid as PyTorch's ``interpolate(...,
align_corners=False)``, so training-time validation and the runtime agree.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tseg.runtime.files import atomic_write_bytes


def _source_grid(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear taps along one axis: lower index, upper index, upper weight."""
    scale = in_len / out_len
    src = np.maximum((np.arange(out_len, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    lower = np.minimum(src.astype(np.int64), in_len - 1)
    upper = np.minimum(lower + 1, in_len - 1)
    return lower, upper, (src - lower).astype(np.float32)


def resize_scores(scores: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """Bilinearly resizes per-class scores (align_corners=False).

    Args:
        scores: (C, h, w) float logits or probabilities.
        size: target (H, W).

    Returns:
        (C, H, W) float32.
    """
    height, width = int(size[0]), int(size[1])
    scores = np.asarray(scores, dtype=np.float32)
    if scores.shape[1:] == (height, width):
        return scores
    r0, r1, wr = _source_grid(height, scores.shape[1])
    c0, c1, wc = _source_grid(width, scores.shape[2])
    rows = scores[:, r0] * (1 - wr)[None, :, None] + scores[:, r1] * wr[None, :, None]
    return rows[:, :, c0] * (1 - wc) + rows[:, :, c1] * wc


def softmax(scores: np.ndarray, *, axis: int = 0) -> np.ndarray:
    """Numerically stable softmax over ``axis`` (float32)."""
    shifted = scores - scores.max(axis=axis, keepdims=True)
    exp = np.exp(shifted, dtype=np.float32)
    return exp / exp.sum(axis=axis, keepdims=True)


def labels_from_scores(scores: np.ndarray, size: Sequence[int] | None = None) -> np.ndarray:
    """Argmax over classes, after resizing the scores to ``size`` (H, W) if given.

    Args:
        scores: (C, h, w) logits or probabilities.
        size: the output (H, W); None keeps (h, w).

    Returns:
        (H, W) uint8 labels (uint16 beyond 256 classes).
    """
    if size is not None:
        scores = resize_scores(scores, size)
    dtype = np.uint8 if scores.shape[0] <= 256 else np.uint16
    return scores.argmax(axis=0).astype(dtype)


def save_label_png(path: str | Path, labels: np.ndarray, *, palette: Sequence[Sequence[int]]) -> None:
    """Saves labels as a palette PNG: pixel values are the labels, colours for viewing.

    Args:
        path: destination .png (written atomically, parent folders created).
        labels: (H, W) integer labels < 256.
        palette: (r, g, b) per class.
    """
    if labels.max(initial=0) > 255:
        raise ValueError(f"palette PNGs hold labels up to 255, got {int(labels.max())}")
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    buffer = io.BytesIO()
    # zlib level 1: label maps are long runs that compress well at any level, and level 6
    # costs about twice the time for files ~25% smaller (the writer is on the hot path).
    img.save(buffer, format="PNG", optimize=False, compress_level=1)
    atomic_write_bytes(path, buffer.getvalue())


def read_label_png(path: str | Path) -> np.ndarray:
    """Reads a label PNG written by :func:`save_label_png` back to (H, W) uint8 labels."""
    with Image.open(path) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"need a palette or grayscale label PNG, got mode {img.mode} in {path}")
        return np.asarray(img, dtype=np.uint8)
