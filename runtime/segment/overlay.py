"""Pictures for people: an image with its labels blended in and a legend of the classes present."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.images import check_image

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


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 with FreeType: a scalable font
    except (TypeError, ImportError, OSError):  # older Pillow or no FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _printable(name: str, font: object) -> str:
    """The name as the font can draw it (the bitmap font knows Latin-1 only)."""
    if isinstance(font, ImageFont.FreeTypeFont):
        return name
    return name.encode("latin-1", errors="replace").decode("latin-1")


def draw_legend(picture: Image.Image, present: Sequence[int], classes: Sequence[str],
                palette: Sequence[Sequence[int]]) -> None:
    """Draws a swatch and the name of each class in ``present`` in the top-left corner, in place.

    The text scales with the picture (about 1/40 of its shorter side, at least 10 px);
    whatever does not fit is clipped by the picture's border.
    """
    width, height = picture.size
    text_size = max(10, min(width, height) // 40)
    font = _font(text_size)
    draw = ImageDraw.Draw(picture)
    pad, swatch = max(2, text_size // 4), text_size
    names = [_printable(str(classes[label]), font) for label in present]
    text_width = max((draw.textlength(name, font=font) for name in names), default=0)
    row = swatch + pad
    box = (0, 0, int(pad * 3 + swatch + text_width), pad + row * len(names))
    draw.rectangle(box, fill=(0, 0, 0))
    for index, (label, name) in enumerate(zip(present, names, strict=True)):
        top = pad + index * row
        draw.rectangle((pad, top, pad + swatch - 1, top + swatch - 1), fill=tuple(palette[label]), outline=(255,) * 3)
        draw.text((pad * 2 + swatch, top), name, fill=(255, 255, 255), font=font)


def overlay_labels(image: np.ndarray, labels: np.ndarray, *, classes: Sequence[str],
                   palette: Sequence[Sequence[int]], alpha: float = 0.5, legend: bool = True) -> np.ndarray:
    """The image with its labels blended in and, optionally, a legend of the classes present.

    Args:
        image: (H, W, 3) uint8 RGB.
        labels: (H, W) integer labels.
        classes: class names, in label order.
        palette: (r, g, b) per class.
        alpha: weight of the class colours, 0..1.
        legend: draw the legend (top left; clipped on images too small to hold it).

    Returns:
        (H, W, 3) uint8 RGB.

    Raises:
        TsegError: mismatched shapes, labels without a colour or a name, alpha outside 0..1.
    """
    if len(classes) != len(palette):
        raise TsegError(f"overlay: need one class name per palette colour, got {len(classes)} and {len(palette)}")
    blended = blend_labels(image, labels, palette, alpha=alpha)
    if not legend:
        return blended
    present = np.flatnonzero(np.bincount(labels.ravel(), minlength=len(palette))).tolist()
    picture = Image.fromarray(blended)
    draw_legend(picture, present, classes, palette)
    return np.asarray(picture, dtype=np.uint8)


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
