"""Exclusive prefix sums of int32 arrays on the device, in a fixed order; and fills.

Three grid-stride kernels over tiles of ``TILE`` items: each tile's total, a serial
scan of the totals on one thread, then each tile's own serial scan from its offset.
Integer sums, so any order gives the same result; no warp intrinsics, so the simulator
runs the same code as a GPU.
"""

import numpy as np
from numba import cuda

from tseg.runtime.crf.cuda.device import grid

TILE = 256  # items scanned serially by one thread


@cuda.jit(cache=True)
def _tile_totals(src, totals):
    """totals[t] = the sum of src's tile t."""
    n = src.shape[0]
    for t in range(cuda.grid(1), totals.shape[0], cuda.gridsize(1)):
        total = 0
        for i in range(t * TILE, min(n, (t + 1) * TILE)):
            total += src[i]
        totals[t] = total


@cuda.jit(cache=True)
def _scan_totals(totals, out):
    """totals <- their exclusive scan (one thread); out[-1] = the grand total."""
    if cuda.grid(1) == 0:
        running = 0
        for t in range(totals.shape[0]):
            value = totals[t]
            totals[t] = running
            running += value
        out[out.shape[0] - 1] = running


@cuda.jit(cache=True)
def _tile_scan(src, offsets, out):
    """out[i] = offsets[tile of i] + the sum of the tile's items before i."""
    n = src.shape[0]
    for t in range(cuda.grid(1), offsets.shape[0], cuda.gridsize(1)):
        running = offsets[t]
        for i in range(t * TILE, min(n, (t + 1) * TILE)):
            value = src[i]
            out[i] = running
            running += value


def exclusive_scan(src):
    """(n + 1,) int32 device array: out[i] = sum(src[:i]), out[n] = sum(src).

    Args:
        src: (n,) int32 device array, n >= 1.
    """
    n = src.shape[0]
    tiles = -(-n // TILE)
    totals = cuda.device_array(tiles, np.int32)
    out = cuda.device_array(n + 1, np.int32)
    _tile_totals[grid(tiles)](src, totals)
    _scan_totals[grid(1)](totals, out)
    _tile_scan[grid(tiles)](src, totals, out)
    return out


@cuda.jit(cache=True)
def _fill(out, value):
    for i in range(cuda.grid(1), out.shape[0], cuda.gridsize(1)):
        out[i] = value


def fill(out, value) -> None:
    """out[:] = value, on the device; out: a 1-D device array."""
    _fill[grid(out.shape[0])](out, out.dtype.type(value))
