"""Lattice features of an image's pixels: positions and colours divided by the widths.

The reference divides in float32 and embeds 4 points at a time, zeros past the end;
those padding points are part of its lattice, so they are of ours.
"""

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel, workspace


@njit(cache=True, nogil=True)
def _fill_features(image, sxy, srgb, out, start, stop):
    """out[p] = (x, y[, r, g, b]) / widths for pixels p in range, in float32 as the
    reference divides; rows past the image stay zero. An image row at a time, on flat
    views indexed from 0 (no negative-index wrap-around), so the divisions vectorise;
    colours through a table of the 256 quotients."""
    height, width = image.shape[:2]
    d = out.shape[1]
    n = height * width
    flat = out.reshape(-1)
    colour = np.empty(256, np.float32)
    for level in range(256):
        colour[level] = np.float32(level) / srgb
    for y in range(start // width, min(stop, n) // width + 1):
        first = max(start, y * width)
        count = min(stop, n, (y + 1) * width) - first
        if count <= 0:
            break
        x0 = first - y * width
        part = flat[first * d:(first + count) * d]
        pixels = image[y, x0:x0 + count]
        fy = np.float32(y) / sxy
        for q in range(count):
            part[np.uint64(q * d)] = np.float32(x0 + q) / sxy
            part[np.uint64(q * d + 1)] = fy
        for c in range(d - 2):
            for q in range(count):
                part[np.uint64(q * d + 2 + c)] = colour[pixels[q, c]]
    flat[max(start, n) * d:max(stop, n) * d] = 0


def pixel_features(image: np.ndarray, *, sxy: float, srgb: float | None, threads: int,
                   lease: workspace.Lease) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """Lattice features of every pixel: position / sxy, and colour / srgb unless None.

    Args:
        image: (H, W, 3) uint8, any strides.
        sxy: position width in pixels; srgb: colour width, or None for positions only.
        threads: threads to use.
        lease: owner of the features' (pooled) memory.

    Returns:
        (padded_points(H * W), 2 or 5) float32 features, zero past the pixels, and
        bounds (lower, upper) of each feature (colours: the whole uint8 range).
    """
    height, width = image.shape[:2]
    d = 2 if srgb is None else 5
    out = lease.array((padded_points(height * width), d))
    args = (image, np.float32(sxy), np.float32(1.0 if srgb is None else srgb), out)
    parallel.run([(_fill_features, args, out.shape[0])], threads)
    return out, feature_bounds(height, width, sxy, srgb)


def feature_bounds(height: int, width: int, sxy: float, srgb: float | None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) bounds of each feature of an image's pixels (colours: the whole
    uint8 range), (2,) or (5,) float64 as :func:`pixel_features` divides them."""
    upper = [(width - 1) / sxy, (height - 1) / sxy]
    if srgb is not None:
        upper += [255.0 / srgb] * 3
    return np.zeros(len(upper)), np.array(upper, np.float64)


def padded_points(n: int) -> int:
    """Points embedded for n pixels: the reference embeds 4 at a time, zeros past the end
    (their vertices exist in its lattice, so they take part in the blur)."""
    return n + (-n) % 4
