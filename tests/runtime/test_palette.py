"""The default palette stays distinct blended 50% over a photo (issue 22: the VOC map's UNKNOWN vs
Plastic bag and Paper vs Battery were hard to tell apart in overlays)."""

from __future__ import annotations

import numpy as np
import pytest

from tseg.runtime.model.metadata import default_palette
from tseg.runtime.palette import blended_distances, cielab


def voc_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map, tseg's default before, as the baseline."""
    colours = []
    for label in range(num_classes):
        r = g = b = 0
        value = label
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours.append((r, g, b))
    return colours


def test_cielab_of_known_colours():
    np.testing.assert_allclose(cielab([255, 255, 255]), [100, 0, 0], atol=0.05)
    np.testing.assert_allclose(cielab([0, 0, 0]), [0, 0, 0], atol=1e-9)
    np.testing.assert_allclose(cielab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.1)


@pytest.mark.parametrize("count, least", [(12, 30.0), (20, 22.0), (40, 15.0)])
def test_blended_colours_are_far_apart(count, least):
    """CIELAB distance between any two colours blended over grey; about 2.3 is a just-noticeable difference."""
    palette = default_palette(count)
    nearest = blended_distances(palette).min()
    assert nearest >= least
    assert nearest > 2 * blended_distances(voc_palette(count)).min()


def test_the_palette_is_stable_and_unique():
    full = default_palette(256)
    assert full[0] == (0, 0, 0) and len(set(full)) == 256
    assert default_palette(12) == full[:12]  # adding classes keeps the colours of the first ones
    assert all(0 <= v <= 255 for colour in full for v in colour)
