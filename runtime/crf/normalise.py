"""The symmetric normalisation of a lattice: the filtered ones, s = 1 / sqrt(K 1).

The reference splats a 1 for every pixel, blurs, slices, and scales both the splat
and the slice by s. Here each hashing chunk splats its points' barycentric weights
into a band of its own (the vertex rows its points touch, so no two threads write
one row and no atomics are needed), the bands are summed per vertex in chunk order,
the sums blurred, and s folded into each pixel's weights.

A chunk's band is the range of rows its points touch: narrow for the Gaussian
lattice (its rows follow the image rows), and for the bilateral one from the oldest
vertex the chunk reaches to its newest. A full row of every vertex per chunk, as
before, was chunks x vertices floats: 10 GB to zero and sum at 2048 x 2048 with
DeepLab's parameters (256 chunks of about 4.8 million vertices).
"""

import numpy as np
from numba import njit

from tseg.runtime.crf import meanfield

_NORM_BLOCK = 64  # pixels normalised together, so their square roots vectorise


@njit(cache=True, nogil=True)
def chunk_bands(offsets, remap, direct_ids, starts, counts, bands, start, stop):
    """bands[c] = the first and last vertex row (id + 1) that chunk c's points touch,
    for the chunks [start, stop), before the offsets are remapped: the ids of the
    chunk's own vertex table (``counts[c]`` of them, from row starts[c] * (d+1) of
    ``remap``), or, when ``direct_ids``, of the box indices its points touch (ids are
    numbered in box order). Padding points count too: a band may be a little wide."""
    dp1 = offsets.shape[1]
    flat_offsets = offsets.reshape(-1)
    for c in range(start, stop):
        lo, hi = np.int64(2**62), np.int64(-1)
        if direct_ids:
            for i in range(starts[c] * dp1, starts[c + 1] * dp1):
                lo = min(lo, np.int64(flat_offsets[i]))
                hi = max(hi, np.int64(flat_offsets[i]))
            if hi >= 0:
                lo, hi = remap[lo], remap[hi]
        else:
            for i in range(starts[c] * dp1, starts[c] * dp1 + counts[c]):
                lo = min(lo, np.int64(remap[i]))
                hi = max(hi, np.int64(remap[i]))
        bands[c, 0] = lo + 1 if hi >= 0 else 1  # an empty chunk: the empty band (1, 0)
        bands[c, 1] = hi + 1 if hi >= 0 else 0


def band_starts(bands: np.ndarray) -> tuple[np.ndarray, int]:
    """Where each chunk's band starts in the flat array of all bands, and its size."""
    sizes = np.maximum(bands[:, 1] - bands[:, 0] + 1, 0)
    starts = np.zeros(bands.shape[0], np.int64)
    np.cumsum(sizes[:-1], out=starts[1:])
    return starts, int(sizes.sum())


@njit(cache=True, nogil=True)
def remap_and_splat_ones(offsets, remap, direct_ids, starts, n, bary, ones, bands, base,
                         start, stop):
    """For the chunks [start, stop): offsets[p, r] = global vertex row (id + 1), and
    ones[base[c] + row - bands[c, 0]] += the barycentric weights of chunk c's points
    p < n (the reference's padding points are not splatted).

    ``remap`` maps chunk c's local ids from row starts[c] * (d+1), or, when
    ``direct_ids``, box indices directly. Flat views indexed from 0 with unsigned
    indices: no negative-index wrap-around per access."""
    dp1 = offsets.shape[1]
    flat_offsets, flat_bary = offsets.reshape(-1), bary.reshape(-1)
    for c in range(start, stop):
        ids = remap[0 if direct_ids else starts[c] * dp1:]
        o = flat_offsets[starts[c] * dp1:starts[c + 1] * dp1]
        b = flat_bary[starts[c] * dp1:max(starts[c], min(starts[c + 1], n)) * dp1]
        shift = base[c] - bands[c, 0]  # row r of the chunk's band at ones[r + shift]
        for i in range(b.shape[0]):
            row = ids[np.uint64(o[i])] + 1
            o[i] = row
            ones[np.uint64(row + shift)] += b[i]
        for i in range(b.shape[0], o.shape[0]):  # padding points
            o[i] = ids[np.uint64(o[i])] + 1


@njit(cache=True, nogil=True)
def gather_ones(values, ones, bands, base, start, stop):
    """values[v + 1] = the chunks' splats of ones onto vertex v, summed in chunk order
    (the chunks whose band misses v add nothing: the same sums as rows of every vertex
    per chunk); a chunk at a time over a block of rows, so the sums vectorise."""
    near = np.empty(bands.shape[0], np.int64)
    for first in range(start + 1, stop + 1, meanfield.GATHER_BLOCK):
        last = min(stop, first + meanfield.GATHER_BLOCK - 1)
        total = values[first:last + 1]
        total[:] = 0
        count = meanfield.bands_meeting(bands, first, last, near)
        for k in range(count):
            c = near[k]
            lo, hi = max(first, bands[c, 0]), min(last, bands[c, 1])
            band = ones[base[c] + lo - bands[c, 0]:base[c] + hi - bands[c, 0] + 1]
            part = total[lo - first:hi - first + 1]
            for i in range(part.shape[0]):
                part[i] += band[i]


@njit(cache=True, nogil=True)
def blur_ones(values, scratch, nbr, start, stop):
    """The blur of one lattice's filtered ones ((M + 1,) rows, row 0 zero), all axes;
    the result is in ``values`` for an even number of axes, else in ``scratch``. Flat
    neighbours with unsigned indices, as meanfield.blur_axis reads them."""
    src, dst = values, scratch
    m = nbr.shape[1]
    flat = nbr.reshape(-1)
    for axis in range(nbr.shape[0]):
        pairs = flat[axis * 2 * m:(axis + 1) * 2 * m]
        for v in range(m):
            i = np.uint64(2 * v)
            a = np.uint64(pairs[i])
            b = np.uint64(pairs[i + np.uint64(1)])
            row = np.uint64(v + 1)
            dst[row] = src[row] + np.float32(0.5) * (src[a] + src[b])
        src, dst = dst, src


@njit(cache=True, nogil=True, error_model="numpy")  # no zero-division branch per pixel
def symmetric_weights(values, offsets, bary, alpha, weights, bounds, rows, start, stop):
    """For the mean-field tasks [start, stop) (pixels bounds[t] .. bounds[t + 1]):
    weights[p] = bary[p] / sqrt(K 1 at p), the filtered ones sliced as the reference
    does, and rows[t] = the smallest and largest vertex row the task's pixels touch.

    A block of pixels at a time, on flat views indexed from 0 (Numba's negative-index
    wrap-around would turn vector loads into gathers), each step in its own loop over
    the block, so the float64 square roots, the row bounds and the products vectorise;
    every pixel's float operations and their order are the scalar ones."""
    dp1 = offsets.shape[1]
    scale = np.empty(_NORM_BLOCK, np.float32)
    spread = np.empty(_NORM_BLOCK * dp1, np.float32)  # s per pixel and corner
    flat_offsets, flat_bary, flat_weights = offsets.reshape(-1), bary.reshape(-1), weights.reshape(-1)
    for t in range(start, stop):
        lo, hi = np.int32(2**31 - 1), np.int32(0)
        for p0 in range(bounds[t], bounds[t + 1], _NORM_BLOCK):
            count = min(_NORM_BLOCK, bounds[t + 1] - p0)
            o = flat_offsets[p0 * dp1:(p0 + count) * dp1]
            b = flat_bary[p0 * dp1:(p0 + count) * dp1]
            w = flat_weights[p0 * dp1:(p0 + count) * dp1]
            for q in range(count):  # K 1 at the pixel, then s = 1 / sqrt of it
                total = np.float32(0.0)
                for r in range(dp1):
                    i = np.uint64(q * dp1 + r)
                    total += b[i] * values[np.uint64(o[i])] * alpha
                scale[q] = total
            for i in range(o.shape[0]):
                lo = min(lo, o[i])
                hi = max(hi, o[i])
            for q in range(count):
                scale[q] = np.float32(1.0 / np.sqrt(np.float64(scale[q]) + 1e-20))
            for r in range(dp1):
                for q in range(count):
                    spread[np.uint64(q * dp1 + r)] = scale[q]
            for i in range(w.shape[0]):
                w[i] = b[i] * spread[i]
        rows[t, 0] = lo
        rows[t, 1] = hi
