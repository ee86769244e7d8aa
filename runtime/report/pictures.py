"""The report's pictures of one image: photo | truth | prediction | after the CRF, with a legend.

The legend (:func:`tseg.runtime.segment.legend.legend_strip`) goes under the tiles, never over
the photo, in text sized to the tiles.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from tseg.runtime.segment.legend import BACKGROUND, INK, font, legend_strip, printable, text_size_for
from tseg.runtime.segment.overlay import blend_labels

GAP = 6  # px between tiles
JPEG_QUALITY = 88


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
        (H', W', 3) uint8 RGB: W' = tiles x W plus gaps (more only where one legend
        entry alone is wider); H' = caption + H + legend.
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
    picture = Image.new("RGB", (max(total, legend.width), caption_height + height + legend.height), BACKGROUND)
    draw = ImageDraw.Draw(picture)
    face = font(text)
    for number, (caption, tile) in enumerate(tiles):
        left = number * (width + GAP)
        draw.text((left, 0), printable(caption, face), fill=INK, font=face)
        picture.paste(Image.fromarray(tile), (left, caption_height))
    picture.paste(legend, (0, caption_height + height))
    return np.asarray(picture)


def jpeg_bytes(picture: np.ndarray) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 picture."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()
