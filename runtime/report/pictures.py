"""The report's pictures of one image: photo | truth | prediction | after the CRF, with a legend.

The legend goes under the tiles, never over the photo, in text sized to the picture (at least
:data:`MIN_TEXT` px), wrapped over as many rows as the classes present need.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tseg.runtime.segment.overlay import blend_labels

MIN_TEXT = 14  # px: the smallest caption or legend text drawn
GAP = 6  # px between tiles
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
JPEG_QUALITY = 88


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's scalable default font at ``size`` px (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def text_size_for(width: int) -> int:
    """Caption and legend text for tiles ``width`` px wide: ~1/24 of it, at least :data:`MIN_TEXT`."""
    return max(MIN_TEXT, width // 24)


def legend_strip(present: Sequence[int], classes: Sequence[str], palette: Sequence[Sequence[int]], *,
                 width: int, text: int) -> Image.Image:
    """Swatches and names of the classes ``present``, wrapped to ``width`` px; an RGB image."""
    face = font(text)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, swatch = max(3, text // 3), text
    cells = [(label, str(classes[label]), int(measure.textlength(str(classes[label]), font=face)))
             for label in present]
    rows: list[list[tuple[int, str, int]]] = [[]]
    used = pad
    for cell in cells:
        need = swatch + pad + cell[2] + 3 * pad
        if rows[-1] and used + need > width:
            rows.append([])
            used = pad
        rows[-1].append(cell)
        used += need
    line = swatch + 2 * pad
    strip = Image.new("RGB", (width, pad + line * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for number, row in enumerate(rows):
        x, top = pad, pad + number * line
        for label, name, name_width in row:
            draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), fill=tuple(palette[label]), outline=INK)
            draw.text((x + swatch + pad, top + swatch / 2), name, fill=INK, font=face, anchor="lm")
            x += swatch + pad + name_width + 3 * pad
    return strip


def panel(image: np.ndarray, layers: Sequence[tuple[str, np.ndarray | None]], *, classes: Sequence[str],
          palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """The photo and each label map blended over it, side by side, captioned, with the legend below.

    Args:
        image: (H, W, 3) uint8 photo.
        layers: (caption, (H, W) integer labels) per tile after the photo; None labels are skipped.
        classes: class names in label order.
        palette: (r, g, b) per class.
        alpha: weight of the class colours in the tiles.

    Returns:
        (H', W', 3) uint8 RGB: W' = tiles x W plus gaps; H' = caption + H + legend.
    """
    height, width = image.shape[:2]
    tiles = [("photo", image)] + [(caption, blend_labels(image, labels, palette, alpha=alpha))
                                  for caption, labels in layers if labels is not None]
    text = text_size_for(width)
    caption_height = text + text // 2
    total = len(tiles) * width + (len(tiles) - 1) * GAP
    present = np.flatnonzero(
        sum(np.bincount(labels.ravel(), minlength=len(palette)) for _, labels in layers if labels is not None)
    ).tolist()
    legend = legend_strip(present, classes, palette, width=total, text=text)
    picture = Image.new("RGB", (total, caption_height + height + legend.height), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    face = font(text)
    for number, (caption, tile) in enumerate(tiles):
        left = number * (width + GAP)
        draw.text((left, 0), caption, fill=INK, font=face)
        picture.paste(Image.fromarray(tile), (left, caption_height))
    picture.paste(legend, (0, caption_height + height))
    return np.asarray(picture)


def jpeg_bytes(picture: np.ndarray) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 picture."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
