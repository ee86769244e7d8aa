"""Pictures for people: an image with its labels blended in and, below it, a legend of the classes present."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.images import check_image
from tseg.runtime.segment.legend import BACKGROUND, legend_strip, text_size_for

OVERLAY_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
JPEG_QUALITY = 90
_ROWS_PER_CHUNK = 256  # blending works on bands of rows: memory stays O(W) beyond the output


def _check_inputs(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float) -> None:
    check_image(image)
    if not isinstance(labels, np.ndarray) or labels.shape != image.shape[:2] or labels.dtype.kind not in "ui":
        raise TsegError(
            f"overlay: need (H, W) integer labels the image's size {image.shape[:2]}, got shape"
            f" {getattr(labels, 'shape', None)} {getattr(labels, 'dtype', type(labels).__name__)}"
        )
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= len(palette)):
        raise TsegError(f"overlay: labels must be in 0..{len(palette) - 1} (one palette colour each),"
                        f" got {int(labels.min())}..{int(labels.max())}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0.0 <= alpha <= 1.0:
        raise TsegError(f"overlay: alpha must be a number in 0..1, got {alpha!r:.40}")


def blend_labels(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], *,
                 alpha: float = 0.5) -> np.ndarray:
    """Blends each pixel's class colour into the image.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer labels, each < len(palette).
        palette: (r, g, b) per class.
        alpha: weight of the class colour (0 keeps the image, 1 gives the palette image).

    Returns:
        (H, W, 3) uint8: ``round((1 - alpha) * image + alpha * palette[labels])`` (in 1/256 steps).
    """
    _check_inputs(image, labels, palette, alpha)
    colours = np.asarray(palette, dtype=np.uint16).reshape(-1, 3)
    weight = np.uint16(round(alpha * 256))
    keep = np.uint16(256) - weight
    out = np.empty_like(image)
    for top in range(0, image.shape[0], _ROWS_PER_CHUNK):
        rows = slice(top, top + _ROWS_PER_CHUNK)
        mixed = image[rows].astype(np.uint16) * keep + colours[labels[rows]] * weight + np.uint16(128)
        out[rows] = (mixed >> 8).astype(np.uint8)
    return out


def with_legend(picture: np.ndarray, present: Sequence[int], classes: Sequence[str],
                palette: Sequence[Sequence[int]]) -> np.ndarray:
    """The picture with a legend strip of the classes ``present`` below it (never over it).

    The text is sized to the picture's shorter side (:func:`~tseg.runtime.segment.legend.text_size_for`,
    at least :data:`~tseg.runtime.segment.legend.MIN_TEXT` px) and wraps to the picture's width; where
    one entry alone is wider than the picture, the result widens and the picture's right is background.

    Returns:
        (H + strip, max(W, widest entry), 3) uint8 RGB whose [:H, :W] is ``picture`` unchanged.
    """
    height, width = picture.shape[:2]
    strip = legend_strip(present, classes, palette, width=width, text=text_size_for(min(height, width)))
    out = np.empty((height + strip.height, strip.width, 3), np.uint8)
    out[:height] = BACKGROUND
    out[:height, :width] = picture
    out[height:] = np.asarray(strip, dtype=np.uint8)
    return out


def overlay_labels(image: np.ndarray, labels: np.ndarray, *, classes: Sequence[str],
                   palette: Sequence[Sequence[int]], alpha: float = 0.5, legend: bool = True) -> np.ndarray:
    """The image with its labels blended in and, optionally, a legend of the classes present.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer labels.
        classes: class names, in label order.
        palette: (r, g, b) per class.
        alpha: weight of the class colours, 0..1.
        legend: add the legend, on a strip below the image (:func:`with_legend`).

    Returns:
        (H, W, 3) uint8 RGB without the legend; with it, (H + strip, W', 3) whose [:H, :W] is the
        blended image (W' = W unless one legend entry alone is wider).

    Raises:
        TsegError: mismatched shapes, labels without a colour or a name, alpha outside 0..1.
    """
    if len(classes) != len(palette):
        raise TsegError(f"overlay: need one class name per palette colour, got {len(classes)} and {len(palette)}")
    blended = blend_labels(image, labels, palette, alpha=alpha)
    if not legend:
        return blended
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(palette))).tolist()
    return with_legend(blended, present, classes, palette)


def encode_overlay(picture: np.ndarray, suffix: str) -> bytes:
    """JPEG (quality 90) or PNG bytes of an (H, W, 3) uint8 picture, by file suffix."""
    fmt = OVERLAY_FORMATS.get(suffix.lower())
    if fmt is None:
        raise TsegError(f"overlay: need a file ending in {', '.join(OVERLAY_FORMATS)}, got {suffix!r:.20}")
    buffer = io.BytesIO()
    options = {"quality": JPEG_QUALITY} if fmt == "JPEG" else {"optimize": False}
    Image.fromarray(picture).save(buffer, format=fmt, **options)
    return buffer.getvalue()


def save_overlay(path: str | Path, image: np.ndarray, labels: np.ndarray, classes: Sequence[str],
                 palette: Sequence[Sequence[int]], *, alpha: float = 0.5, legend: bool = True) -> None:
    """Writes :func:`overlay_labels`' picture as a JPEG or PNG (by suffix), atomically.

    Raises:
        TsegError: an unsupported suffix, or bad inputs (see :func:`overlay_labels`).
    """
    path = Path(path)
    if path.suffix.lower() not in OVERLAY_FORMATS:  # before the work
        raise TsegError(f"overlay {path}: need a file ending in {', '.join(OVERLAY_FORMATS)}")
    picture = overlay_labels(image, labels, classes=classes, palette=palette, alpha=alpha, legend=legend)
    atomic_write_bytes(path, encode_overlay(picture, path.suffix))
