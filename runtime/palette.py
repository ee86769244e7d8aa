"""The default class colours: chosen to stay distinct when blended half over a photo.

Overlays blend each class colour 50% into the photo, which halves every difference between
colours; dark colours that differ only in one channel's top bit (the PASCAL VOC map's
(128, 0, 0) and (192, 0, 0)) become hard to tell apart. Here each colour is picked greedily
as the one farthest, in CIELAB, from all picked so far, comparing colours as they look
blended 50% over mid-grey.
"""

from __future__ import annotations

import numpy as np

GRID_LEVELS = 16  # candidate colours: a 16x16x16 RGB grid (steps of 17)
BLEND_OVER = 128  # the grey the colours are compared blended over
MAX_COLOURS = 256


def cielab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours.

    Args:
        rgb: (..., 3) values in 0..255.

    Returns:
        (..., 3) float64 L*, a*, b*.
    """
    c = np.asarray(rgb, dtype=np.float64) / 255.0
    linear = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    to_xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = linear @ to_xyz.T / np.array([0.9505, 1.0, 1.089])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], axis=-1)


def blended_distances(palette) -> np.ndarray:
    """(C, C) CIELAB distances between the colours blended 50% over mid-grey (diagonal: inf)."""
    lab = cielab((np.asarray(palette, dtype=np.float64) + BLEND_OVER) / 2)
    distances = np.linalg.norm(lab[:, None] - lab[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    return distances


def distinct_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """``num_classes`` colours, black first (the background), each the farthest from those before.

    Deterministic; the first k colours of any longer palette are the k-colour palette.
    """
    steps = np.arange(GRID_LEVELS) * (255 // (GRID_LEVELS - 1))
    candidates = np.stack(np.meshgrid(steps, steps, steps, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = cielab((candidates + BLEND_OVER) / 2)
    chosen = [0]  # black
    nearest = np.linalg.norm(lab - lab[0], axis=1)
    while len(chosen) < num_classes:
        pick = int(nearest.argmax())
        chosen.append(pick)
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[pick], axis=1))
    return tuple(tuple(int(v) for v in candidates[i]) for i in chosen)
