"""The one home for drawing a class legend: swatches and names on a strip of their own.

A legend never covers a photo: callers put :func:`legend_strip` below (or beside) the picture
it explains. Its text is sized to the picture (:func:`text_size_for`, at least :data:`MIN_TEXT`
px) and wraps over as many rows as the classes need. Used by ``tseg-infer --overlay``
(:mod:`tseg.runtime.segment.overlay`) and the report's panels (:mod:`tseg.runtime.report.pictures`).
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

MIN_TEXT = 14  # px: the smallest caption or legend text drawn
TEXT_FRACTION = 24  # text is ~1/24 of the picture's side it is sized to
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's scalable default font at ``size`` px (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ImportError, OSError):
        return ImageFont.load_default()


def printable(name: str, face: object) -> str:
    """The name as ``face`` can draw it (the bitmap font knows Latin-1 only: others become '?')."""
    if isinstance(face, ImageFont.FreeTypeFont):
        return name
    return name.encode("latin-1", errors="replace").decode("latin-1")


def text_size_for(side: int) -> int:
    """Caption and legend text for a picture (or tile) ``side`` px across: ~1/24 of it, at least :data:`MIN_TEXT`."""
    return max(MIN_TEXT, side // TEXT_FRACTION)


def _cells(present: Sequence[int], classes: Sequence[str], face: object) -> list[tuple[int, str, int]]:
    """(label, printable name, name width in px) per class present."""
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    names = [(label, printable(str(classes[label]), face)) for label in present]
    return [(label, name, int(measure.textlength(name, font=face))) for label, name in names]


def legend_strip(present: Sequence[int], classes: Sequence[str], palette: Sequence[Sequence[int]], *,
                 width: int, text: int) -> Image.Image:
    """Swatches and names of the classes ``present``, wrapped to ``width`` px; an RGB image.

    Args:
        present: labels to show, in order.
        classes: class names in label order.
        palette: (r, g, b) per class.
        width: the strip's width; it is wider only where one entry alone needs more.
        text: text (and swatch) size in px.

    Returns:
        A white strip, ``text`` plus padding tall per row (one row when nothing is present).
    """
    face = font(text)
    pad, swatch = max(3, text // 3), text
    rows: list[list[tuple[int, str, int]]] = [[]]
    used = widest = pad
    for cell in _cells(present, classes, face):
        need = swatch + pad + cell[2] + 3 * pad
        if rows[-1] and used + need > width:
            rows.append([])
            used = pad
        rows[-1].append(cell)
        used += need
        widest = max(widest, used)
    line = swatch + 2 * pad
    strip = Image.new("RGB", (max(width, widest), pad + line * len(rows)), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for number, row in enumerate(rows):
        x, top = pad, pad + number * line
        for label, name, name_width in row:
            draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), fill=tuple(palette[label]), outline=INK)
            draw.text((x + swatch + pad, top + swatch / 2), name, fill=INK, font=face, anchor="lm")
            x += swatch + pad + name_width + 3 * pad
    return strip
