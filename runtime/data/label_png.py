"""Label maps as palette PNGs: pixel values are the labels, the palette is for viewing."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.inputs import open_input


def save_label_png(path: str | Path, labels: np.ndarray, *, palette: Sequence[Sequence[int]]) -> None:
    """Saves labels as a palette PNG: pixel values are the labels, colours for viewing.

    Args:
        path: destination .png (written atomically, parent folders created).
        labels: (H, W) integer labels < 256.
        palette: (r, g, b) per class.
    """
    if labels.max(initial=0) > 255 or labels.min(initial=0) < 0:
        raise TsegError(f"labels: a palette PNG holds labels 0..255, got {int(labels.min())}..{int(labels.max())}")
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [c for rgb in palette for c in rgb]
    img.putpalette(flat + [0] * (768 - len(flat)))
    buffer = io.BytesIO()
    # zlib level 1: label maps are long runs that compress well at any level, and level 6
    # costs about twice the time for files ~25% smaller (the writer is on the hot path).
    img.save(buffer, format="PNG", optimize=False, compress_level=1)
    atomic_write_bytes(path, buffer.getvalue())


def read_label_png(path: str | Path) -> np.ndarray:
    """Reads a label PNG written by :func:`save_label_png` back to (H, W) uint8 labels.

    Raises:
        TsegError: not a regular file, not an image, or not a palette or grayscale PNG.
    """
    with open_input(path, what="label PNG") as handle:
        try:
            with Image.open(handle) as img:
                if img.mode not in ("P", "L"):
                    raise TsegError(f"path: need a palette or grayscale label PNG, got mode {img.mode} in {path}")
                return np.asarray(img, dtype=np.uint8)
        except (OSError, ValueError) as err:  # Pillow's errors for a file that is not an image
            raise TsegError(f"path: cannot read the label PNG {path}: {err}") from None
