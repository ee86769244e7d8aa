"""Permutohedral lattice (Adams, Baek & Davis 2010) in Numba, laid out for mean field.

Reproduces the lattice of Kraehenbuehl's DenseCRF (the code behind pydensecrf): the
same elevation, float32 rounding, rank tie-breaking, vertex keys and blur order, so
filtering matches it to float rounding. The layout differs, for speed on few cores:

- lattice values are (M + 1, L): the L labels of a vertex are contiguous and row 0 is
  a zero row that stands for a missing blur neighbour (so the blur has no branches);
- vertices are found by deduplicating simplices (per chunk in parallel, then a
  short serial pass) with keys packed into an int64 when they fit, and blur
  neighbours come from linear merges over the sorted packed keys, once per build;
- splatting gathers through a vertex-major inverse map (CSR of pixel, weight), so it
  runs in parallel over vertices without atomics or per-thread buffers;
- the compatibility is applied on the vertices (it acts on labels, the filter on
  pixels), and slicing, unary and softmax are one pass over pixels.

Every kernel is compiled with ``cache=True`` (paid once per machine) and ``nogil=True``
(callers may run a CRF beside other work).
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel
from tseg.runtime.crf.hashing import (
    SIMPLEX_CHUNK,
    blur_neighbours,
    dedupe_simplices,
    insert_vertices,
    insert_vertices_packed,
    key_packing,
    merge_neighbours,
    pack_keys,
    point_offsets,
    point_packing,
)
from tseg.runtime.crf.meanfield import blur

_EMBED_BLOCK = 64  # points embedded together, coordinate-major, so loops vectorise


@njit(cache=True, nogil=True)
def _embed_block(f, p0, scale, elev, rem0, rank):
    """Remainder-0 points and ranks of points p0 .. p0 + _EMBED_BLOCK (SoA, (d+1, B)).

    Mirrors the reference's SSE path operation by operation in float32 (its rounding
    is round-half-to-even), so every point lands in the same simplex. No fastmath:
    a fused multiply-add would move points across simplex boundaries.
    """
    d = f.shape[1]
    dp1 = np.float32(d + 1)
    inv = np.float32(1.0) / dp1
    total = np.zeros(_EMBED_BLOCK, np.float32)
    elev[0, :] = 0  # the running sum ("sm" in the reference), ends as elev[0]
    for j in range(d, 0, -1):
        for b in range(_EMBED_BLOCK):
            cf = f[p0 + b, j - 1] * scale[j - 1]
            elev[j, b] = elev[0, b] - np.float32(j) * cf
            elev[0, b] += cf
    for i in range(d + 1):
        for b in range(_EMBED_BLOCK):
            v = np.rint(inv * elev[i, b])
            rem0[i, b] = v * dp1
            total[b] += v
            rank[i, b] = 0
    for i in range(d):
        for j in range(i + 1, d + 1):
            for b in range(_EMBED_BLOCK):
                below = elev[i, b] - rem0[i, b] < elev[j, b] - rem0[j, b]
                c = np.float32(1.0) if below else np.float32(0.0)
                rank[i, b] += c
                rank[j, b] += np.float32(1.0) - c
    for i in range(d + 1):
        for b in range(_EMBED_BLOCK):
            r = rank[i, b] + total[b]
            shift = dp1 if r < 0 else (-dp1 if r >= dp1 else np.float32(0.0))
            rank[i, b] = r + shift
            rem0[i, b] += shift


@njit(cache=True, nogil=True)
def embed(features, scale, rem0, rank, bary, start, stop):
    """Embed points [start, stop): features (P, d) -> rem0, rank (P, d+1) int32 and the
    barycentric weights bary (P, d+1) float32."""
    d = features.shape[1]
    inv = np.float32(1.0) / np.float32(d + 1)
    elev = np.empty((d + 1, _EMBED_BLOCK), np.float32)
    r0 = np.empty((d + 1, _EMBED_BLOCK), np.float32)
    rk = np.empty((d + 1, _EMBED_BLOCK), np.float32)
    tail = np.zeros((_EMBED_BLOCK, d), np.float32)
    b = np.empty(d + 2, np.float32)
    for p0 in range(start, stop, _EMBED_BLOCK):
        count = min(_EMBED_BLOCK, stop - p0)
        if count == _EMBED_BLOCK:
            _embed_block(features, p0, scale, elev, r0, rk)
        else:  # a last, partial block: embed a zero-padded copy
            tail[:count] = features[p0:stop]
            _embed_block(tail, 0, scale, elev, r0, rk)
        for q in range(count):
            b[:] = 0
            for i in range(d + 1):
                v = (elev[i, q] - r0[i, q]) * inv
                k = d - np.int64(rk[i, q])
                b[k] += v
                b[k + 1] -= v
            b[0] += np.float32(1.0) + b[d + 1]
            for i in range(d + 1):
                rem0[p0 + q, i] = np.int32(r0[i, q])
                rank[p0 + q, i] = np.int32(rk[i, q])
                bary[p0 + q, i] = b[i]


@njit(cache=True, nogil=True)
def inverse_map(offsets, bary, m):
    """Vertex-major CSR of the splat, in the reference's summation order.

    Returns:
        indptr (M+1,) int64; pixel (E,) int32 and weight (E,) float32, where the
        entries indptr[v]:indptr[v+1] are the (pixel, barycentric weight) pairs that
        splat onto vertex v, in pixel order.
    """
    n, dp1 = offsets.shape
    indptr = np.zeros(m + 1, np.int64)
    for p in range(n):
        for r in range(dp1):
            indptr[offsets[p, r]] += 1  # offsets are vertex + 1
    for v in range(m):
        indptr[v + 1] += indptr[v]
    pixel = np.empty(n * dp1, np.int32)
    weight = np.empty(n * dp1, np.float32)
    fill = indptr[:m].copy()
    for p in range(n):
        for r in range(dp1):
            v = offsets[p, r] - 1
            pixel[fill[v]] = p
            weight[fill[v]] = bary[p, r]
            fill[v] += 1
    return indptr, pixel, weight


@njit(cache=True, nogil=True)
def splat_norm(values, indptr, weight, start, stop):
    """values[v + 1, 0] = sum of the weights splatted onto vertex v: filtering ones."""
    for v in range(start, stop):
        acc = np.float32(0.0)
        for e in range(indptr[v], indptr[v + 1]):
            acc += weight[e]
        values[v + 1, 0] = acc


@njit(cache=True, nogil=True)
def slice_norm(values, offsets, bary, alpha, out, start, stop):
    """out[p] = filtered ones at pixel p: the symmetric normaliser's input."""
    for p in range(start, stop):
        acc = np.float32(0.0)
        for r in range(offsets.shape[1]):
            acc += bary[p, r] * values[offsets[p, r], 0] * alpha
        out[p] = acc


@dataclass(frozen=True)
class Lattice:
    """A permutohedral lattice over N points with symmetric normalisation folded in.

    Filtering Q (N, L) is ``s * K(s * Q)`` with ``s = 1 / sqrt(K 1)``, as the
    reference's default NORMALIZE_SYMMETRIC: ``s`` is baked into the splat weights
    and, with the constant alpha, into the slice weights.

    Attributes:
        offsets: (N, d+1) int32, vertex index + 1 of each pixel's simplex corners.
        slice_weight: (N, d+1) float32, barycentric weight * alpha * s[pixel].
        indptr: (M+1,) int64 CSR row pointers of the splat, per vertex.
        pixel: (E,) int32 source pixel of each splat entry.
        splat_weight: (E,) float32 barycentric weight * s[pixel] of each entry.
        neighbours: (d+1, M, 2) int32 blur neighbours (index + 1, 0 when missing).
    """

    offsets: np.ndarray
    slice_weight: np.ndarray
    indptr: np.ndarray
    pixel: np.ndarray
    splat_weight: np.ndarray
    neighbours: np.ndarray

    @property
    def num_vertices(self) -> int:
        return self.indptr.shape[0] - 1

    @property
    def nbytes(self) -> int:
        return sum(array.nbytes for array in vars(self).values())


def _scale_factors(d: int) -> np.ndarray:
    # float32 exactly as the reference rounds them: inv_std_dev is a float there.
    inv_std_dev = float(np.float32(np.sqrt(2.0 / 3.0) * (d + 1)))
    return np.array([1.0 / np.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)],
                    dtype=np.float32)


class _Build:
    """One lattice under construction: each method returns the parallel.run job of
    one stage, so that the stages of several lattices run side by side."""

    def __init__(self, features: np.ndarray, pad: int) -> None:
        self.n, d = features.shape
        if pad:  # the reference embeds 4 points at a time, zeros past the end
            features = np.concatenate([features, np.zeros((pad, d), np.float32)])
        self.features = features
        size = self.n + pad
        self.rem0 = np.empty((size, d + 1), np.int32)
        self.rank = np.empty((size, d + 1), np.int32)
        self.bary = np.empty((size, d + 1), np.float32)
        chunks = -(-size // SIMPLEX_CHUNK)
        self.local = np.empty(size, np.int32)
        self.firsts = np.empty(size, np.int32)
        self.counts = np.empty(chunks, np.int64)

    def embed_job(self):
        d = self.features.shape[1]
        return (embed, (self.features, _scale_factors(d), self.rem0, self.rank, self.bary),
                self.features.shape[0])

    def dedupe_job(self):
        return (dedupe_simplices, (self.rem0, self.rank, self.local, self.firsts,
                                   self.counts), self.counts.shape[0], 1)

    def insert_job(self):
        """Serial: numbers simplices and vertices (keys packed in an int64 if they fit)."""
        self.packing = point_packing(self.rem0)

        def job(start: int, stop: int) -> None:
            args = (self.rem0, self.rank, self.firsts, self.counts)
            if self.packing is None:
                self.corner, self.corners, self.keys, self.slots = insert_vertices(*args)
                self.m = self.keys.shape[0]
            else:
                self.corner, self.corners, self.packed = insert_vertices_packed(
                    *args, *self.packing)
                self.m = self.packed.shape[0]
                # Sorted here, beside the other lattice's insertion, for the neighbours.
                # (Vertex ids stay in first-touch order: renumbering them in key order
                # makes the blur stream but scatters the splat and slice, a net loss.)
                self.order = np.argsort(self.packed, kind="stable").astype(np.int32)
                self.packed = self.packed[self.order]
        return job, (), 1

    def offsets_job(self):
        self.offsets = np.empty((self.n, self.rem0.shape[1]), np.int32)
        return (point_offsets, (self.local, self.corner, self.corners, self.offsets),
                self.n)

    def inverse_job(self):
        def job(start: int, stop: int) -> None:  # serial
            self.inverse = inverse_map(self.offsets, self.bary[:self.n], self.m)
        return job, (), 1

    def neighbours_job(self, threads: int):
        """A merge over sorted packed keys when they pack into an int64 (linear passes
        instead of 2(d+1) random hash probes a vertex), else hash lookups."""
        dp1 = self.rem0.shape[1]
        self.neighbours = nbr = np.empty((dp1, self.m, 2), np.int32)
        if self.packing is None:
            packing = key_packing(self.keys) if self.m else None
            if packing is None:
                return blur_neighbours, (self.keys, self.slots, nbr), self.m
            self.packed = np.empty(self.m, np.int64)
            parallel.run([(pack_keys, (self.keys, *packing, self.packed), self.m)], threads)
            self.packing = packing
            self.order = np.argsort(self.packed, kind="stable").astype(np.int32)
            self.packed = self.packed[self.order]
        return (merge_neighbours, (self.packed, self.order, self.packing[1], nbr), 2 * dp1, 1)


def build_lattices(features: list[np.ndarray], threads: int) -> list[Lattice]:
    """Build lattices and their symmetric normalisation, several at once.

    The serial steps (hash insertion, inverse map) of different lattices run side by
    side; the rest is split over points or vertices.

    Args:
        features: per lattice, (N, d) float32 C-contiguous points already divided by
            the kernel widths (N the same for all, d may differ).
        threads: threads to use.

    Returns:
        One :class:`Lattice` per feature array.
    """
    pad = (-features[0].shape[0]) % 4
    builds = [_Build(f, pad) for f in features]
    for stage in (_Build.embed_job, _Build.dedupe_job, _Build.insert_job,
                  _Build.offsets_job):
        parallel.run([stage(b) for b in builds], threads)
    parallel.run([b.inverse_job() for b in builds]
                 + [b.neighbours_job(threads) for b in builds], threads)
    parts = ([b.offsets for b in builds], [b.bary[:b.n] for b in builds],
             [b.inverse for b in builds], [b.neighbours for b in builds])
    del builds  # the hash tables and per-point scratch: lower the peak
    return _normalise(*parts, threads)


def _normalise(offsets, bary, inverse, neighbours, threads: int) -> list[Lattice]:
    """Filter ones on each lattice and fold s = 1 / sqrt(K 1) into the weights."""
    n = offsets[0].shape[0]
    values = [np.zeros((nbr.shape[1] + 1, 1), np.float32) for nbr in neighbours]
    parallel.run([(splat_norm, (v, indptr, weight), indptr.shape[0] - 1)
                  for v, (indptr, _, weight) in zip(values, inverse, strict=True)], threads)
    blurred = blur([(v, np.zeros_like(v), nbr) for v, nbr in zip(values, neighbours, strict=True)],
                   threads)
    alphas = [np.float32(1.0 / (1.0 + 2.0 ** -(nbr.shape[0] - 1))) for nbr in neighbours]
    norms = [np.empty(n, np.float32) for _ in neighbours]
    parallel.run([(slice_norm, args, n)
                  for args in zip(blurred, offsets, bary, alphas, norms, strict=True)], threads)
    lattices = []
    for norm, alpha, off, b, (indptr, pixel, weight), nbr in zip(
            norms, alphas, offsets, bary, inverse, neighbours, strict=True):
        s = (1.0 / np.sqrt(norm.astype(np.float64) + 1e-20)).astype(np.float32)
        weight *= s[pixel]
        slice_weight = b * (alpha * s)[:, None]
        lattices.append(Lattice(off, slice_weight, indptr, pixel, weight, nbr))
    return lattices
