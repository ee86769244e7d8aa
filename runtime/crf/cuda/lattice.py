"""A permutohedral lattice built on the device, symmetric normalisation folded in.

The same lattice as the CPU path's (:mod:`tseg.runtime.crf.lattice`: its key layout,
elevation factors and feature bounds are reused from there): the reference's padding
points included, vertices numbered in first-touch order. The build:

1. :func:`.embed.embed_points`: features, simplex and weights of every point (one thread each);
2. :func:`.table.insert_entries`: corner keys into a lock-free hash table; a scan numbers
   the vertices; :func:`.table.find_neighbours` finds the blur neighbours once;
3. :mod:`.segments`: each vertex's entries sorted, for the gather-based splat;
4. the normalisation: ones splatted, blurred and sliced; s = 1 / sqrt(K 1) per pixel goes
   into the weights, as on the CPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import cuda

from tseg.runtime.crf import hashing
from tseg.runtime.crf.cuda import embed, kernels, scan, segments, table
from tseg.runtime.crf.cuda.device import grid
from tseg.runtime.crf.embed import elevated_bounds, scale_factors
from tseg.runtime.crf.features import feature_bounds, padded_points


@dataclass(frozen=True)
class DeviceLattice:
    """A lattice's device arrays, as :mod:`.kernels` read them.

    Attributes:
        rows: (P, d+1) int32 vertex column (id + 1) of each point's simplex corners.
        weights: (n * (d+1),) float32 barycentric weight * s[pixel] per real entry.
        neighbours: (d+1, M, 2) int32 blur neighbours' columns (0 when absent).
        starts: (M + 1,) int32 bounds of each vertex's segment of ``entries``.
        entries: (n * (d+1),) int32 entry ids (p * (d+1) + r) by vertex, ascending.
        alpha: the slice's scale, 1 / (1 + 2**-d) (left to the compatibility).
    """

    rows: object
    weights: object
    neighbours: object
    starts: object
    entries: object
    alpha: float

    @property
    def num_vertices(self) -> int:
        return self.neighbours.shape[1]


@cuda.jit(cache=True)
def _symmetric_weights(bary, rows, blurred, alpha, weights):
    """weights[e] = bary[e] / sqrt(K 1 at e's pixel), the filtered ones sliced as the
    CPU path's lattice.symmetric_weights does (float32 sum, float64 square root)."""
    dp1 = rows.shape[1]
    for p in range(cuda.grid(1), weights.shape[0] // dp1, cuda.gridsize(1)):
        total = np.float32(0.0)
        for r in range(dp1):
            total += bary[p * dp1 + r] * blurred[0, rows[p, r]] * alpha
        s = np.float32(1.0 / math.sqrt(np.float64(total) + 1e-20))
        for r in range(dp1):
            weights[p * dp1 + r] = bary[p * dp1 + r] * s


def _zeros(shape, dtype):
    """A device array of zeros, filled on the device."""
    out = cuda.device_array(shape, dtype)
    scan.fill(out.reshape(-1), 0)
    return out


def _vertices(image, n: int, sxy: float, srgb: float | None):
    """Steps 1-2: (bary, rows, neighbours) of the lattice of n pixels' features."""
    height, width = image.shape[:2]
    d = 2 if srgb is None else 5
    scale = scale_factors(d)
    low, units, _ = hashing.key_layout(*elevated_bounds(*feature_bounds(height, width, sxy, srgb),
                                                         scale), d)
    points = padded_points(n)
    size = points * (d + 1)
    bary = cuda.device_array(size, np.float32)
    keys = cuda.device_array((size, 2), np.int64)
    embed.embed_points[grid(points)](image, n, np.float32(sxy), np.float32(srgb or 1.0),
                                     cuda.to_device(scale), cuda.to_device(low),
                                     cuda.to_device(units), bary, keys)
    slots_table = cuda.device_array(1 << int(np.ceil(np.log2(2 * size))), np.int32)
    scan.fill(slots_table, table.EMPTY)
    slots = cuda.device_array(size, np.int32)
    table.insert_entries[grid(size)](slots_table, keys, slots)
    first = cuda.device_array(size, np.int32)
    table.mark_first[grid(size)](slots_table, slots, first)
    ids = scan.exclusive_scan(first)
    m = int(ids[size:].copy_to_host()[0])
    rows = cuda.device_array((points, d + 1), np.int32)
    reps = cuda.device_array(m, np.int32)
    table.number_entries[grid(size)](slots_table, slots, ids, rows.reshape(-1), reps)
    neighbours = cuda.device_array((d + 1, m, 2), np.int32)
    table.find_neighbours[grid(m)](slots_table, keys, rows.reshape(-1), reps,
                                   cuda.to_device(hashing.neighbour_deltas(units)), neighbours)
    return bary, rows, neighbours


def _segments(rows, n: int, m: int):
    """Step 3: (starts, entries) of the real pixels' entries by vertex, sorted."""
    real = rows.reshape(-1)[:n * rows.shape[1]]
    counts = _zeros(m, np.int32)
    segments.count_entries[grid(real.shape[0])](real, counts)
    starts = scan.exclusive_scan(counts)
    cursor = _zeros(m, np.int32)
    entries = cuda.device_array(real.shape[0], np.int32)
    segments.fill_segments[grid(real.shape[0])](real, starts, cursor, entries)
    segments.sort_segments[grid(m)](starts, entries)
    return starts, entries


def build_lattice(image, *, sxy: float, srgb: float | None) -> DeviceLattice:
    """The lattice of an image's pixels on the device, normalised.

    Args:
        image: (H, W, 3) uint8 device array.
        sxy: position width in pixels; srgb: colour width, or None for the Gaussian
            kernel (positions only, d = 2; else d = 5).
    """
    n = image.shape[0] * image.shape[1]
    bary, rows, neighbours = _vertices(image, n, sxy, srgb)
    dp1, m = neighbours.shape[0], neighbours.shape[1]
    starts, entries = _segments(rows, n, m)
    ones = cuda.device_array((1, n), np.float32)
    scan.fill(ones.reshape(-1), 1)
    values = _zeros((1, m + 1), np.float32)
    other = _zeros((1, m + 1), np.float32)
    kernels.splat[grid(m)](ones, starts, entries, bary[:n * dp1], ones[0, :1], values)
    for axis in range(dp1):
        kernels.blur_axis[grid(m)](values, other, neighbours, axis)
        values, other = other, values
    alpha = np.float32(1.0 / (1.0 + 2.0 ** -(dp1 - 1)))
    weights = cuda.device_array(n * dp1, np.float32)
    _symmetric_weights[grid(n)](bary, rows, values, alpha, weights)
    return DeviceLattice(rows, weights, neighbours, starts, entries, float(alpha))
