"""Splat targets of big lattices: each vertex row written by one task, no accumulators.

Mean field's pixel pass splats Q in tasks (fixed bands of pixels, see
:func:`tseg.runtime.crf.meanfield.task_bounds`) on several threads. A small lattice gives
each task a banded accumulator and sums them per vertex afterwards (``gather_messages``).
For a lattice that outgrows the L2 cache that sum reads and clears 1.0 to 1.8 times the
lattice per iteration, as much as a blur axis or two. Here instead:

- a vertex's *owner* is the first task that touches it (vertex ids are numbered in
  first-touch order, so each task owns a range of them); the owner splats straight into
  the vertex's row. Each other task that touches it (8% of the bilateral lattice's
  vertices with DeepLab's parameters, 0.3% of the Gaussian one's) splats into an alias
  row of its own, after the vertex rows; a short gather then adds the aliases to the
  vertex rows in task order. The sums, owner first, are the banded accumulators' sums.
- each corner's row carries a first-touch bit (``simd.FIRST_TOUCH``) where its task
  splats onto that row for the first time: that splat stores instead of adding, so
  nothing is cleared between passes (the splat buffer is zeroed once, for the rows of
  vertices that only the embedding's padding points reach, which no pass writes).
- the pixel pass slices the messages through the same rows, so after the blur each
  alias row gets a copy of its vertex's messages.
- the compatibility (the gain) is applied in the blur's first axis, which reads the
  splat buffer and writes the first of two ping-pong buffers.

Everything is fixed by the lattice and the task bounds, so the results do not depend on
the number of threads.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from tseg.runtime.crf import meanfield, parallel, simd

# Lattices that outgrow the L2 cache and have a vertex per two pixels or more (DeepLab's
# parameters) splat through alias rows. The others keep their banded accumulators: their
# gather costs less than the first-touch bits and the aliases' build (the default Gaussian
# lattice at 1024 x 1024, 0.13 vertices a pixel: 5% slower with aliases).
ALIAS_VERTICES = meanfield._PREFETCH_ROWS
ALIAS_PIXELS_PER_VERTEX = 2


def wants_aliases(num_vertices: int, pixels: int) -> bool:
    """Whether a lattice of ``num_vertices`` over ``pixels`` pixels splats through aliases."""
    return num_vertices >= ALIAS_VERTICES and num_vertices * ALIAS_PIXELS_PER_VERTEX >= pixels

_WORD = 64  # vertex rows per word of a task's bitmap
_FIRST = np.int32(simd.FIRST_TOUCH)


@dataclass(frozen=True)
class Aliases:
    """A lattice's alias rows (see the module docstring).

    Attributes:
        shared: (S,) int64 vertex rows touched by more than one task, ascending.
        starts: (S + 1,) int64: the aliases of shared[s] are rows starts[s] ..
            starts[s + 1], in task order, from num_vertices + 1 on.
        rows: rows of each mean-field buffer: vertex rows, row 0, and the aliases.
    """

    shared: np.ndarray
    starts: np.ndarray
    rows: int


@njit(cache=True, nogil=True)
def _mark_first_touches(offsets, bounds, seen, start, stop):
    """Tasks [start, stop): bit r of seen[t] for each row r task t touches, and the
    first-touch bit on the corner where it first does (in pixel and corner order)."""
    dp1 = offsets.shape[1]
    flat = offsets.reshape(-1)
    for t in range(start, stop):
        mine = seen[t]
        for i in range(bounds[t] * dp1, bounds[t + 1] * dp1):
            row = flat[i]
            word = row >> 6
            bit = np.uint64(1) << np.uint64(row & 63)
            bits = mine[word]
            mine[word] = bits | bit
            flat[i] = row | (_FIRST if bits & bit == 0 else np.int32(0))  # no branch


@njit(cache=True, nogil=True)
def _shared_bits(seen, w):
    """The rows of bitmap word w that more than one task touches."""
    union = np.uint64(0)
    many = np.uint64(0)
    for t in range(seen.shape[0]):
        many |= union & seen[t, w]
        union |= seen[t, w]
    return many


@njit(cache=True, nogil=True)
def _other_tasks(seen, w, bit):
    """The tasks but the first that touch the row of ``bit`` in word w: its aliases."""
    tasks = 0
    for t in range(seen.shape[0]):
        if seen[t, w] & bit:
            tasks += 1
    return tasks - 1


@njit(cache=True, nogil=True)
def _count_shared(seen, counts, chunk_words, start, stop):
    """counts[c] = (shared rows, alias rows) of the words of chunk c, c in [start, stop)."""
    for c in range(start, stop):
        for w in range(c * chunk_words, min((c + 1) * chunk_words, seen.shape[1])):
            many = _shared_bits(seen, w)
            while many:
                low = many & (~many + np.uint64(1))  # its lowest bit
                counts[c, 0] += 1
                counts[c, 1] += _other_tasks(seen, w, low)
                many ^= low


@njit(cache=True, nogil=True)
def _list_shared(seen, firsts, chunk_words, shared, starts, alias_of, start, stop):
    """Fill shared, starts and alias_of (a shared row's first alias row) for chunks
    [start, stop) from firsts[c] = (the chunk's first shared index, its first alias row)."""
    for c in range(start, stop):
        s = firsts[c, 0]
        row = firsts[c, 1]
        for w in range(c * chunk_words, min((c + 1) * chunk_words, seen.shape[1])):
            many = _shared_bits(seen, w)
            while many:
                low = many & (~many + np.uint64(1))
                vertex_row = w * _WORD + _trailing_zeros(low)
                shared[s] = vertex_row
                starts[s] = row
                alias_of[vertex_row] = row
                row += _other_tasks(seen, w, low)
                s += 1
                many ^= low


@njit(cache=True, nogil=True)
def _trailing_zeros(x):
    n = 0
    while not x & np.uint64(1):
        x >>= np.uint64(1)
        n += 1
    return n


@njit(cache=True, nogil=True)
def _redirect(offsets, bounds, older, seen, alias_of, start, stop):
    """Pixels bounds[1] + [start, stop) (task 0 owns every row it touches): a corner on
    a row an earlier task touched goes to its task's alias row of it (the first-touch
    bit kept). Rows are numbered in first-touch order, so those are the rows up to
    older[t], the last row the tasks before t reach. Shared out by pixels, not by
    tasks: the three tasks after the first do not divide among two threads."""
    dp1 = offsets.shape[1]
    flat = offsets.reshape(-1)
    p, end = bounds[1] + start, bounds[1] + stop
    t = np.searchsorted(bounds, p, side="right") - 1
    while p < end:
        stop_t = min(end, bounds[t + 1])
        last = older[t]
        for i in range(p * dp1, stop_t * dp1):
            entry = flat[i]
            row = entry & simd.ROW_BITS
            if row > last:
                continue
            first = alias_of[row]
            word = row >> 6
            bit = np.uint64(1) << np.uint64(row & 63)
            earlier = 0
            for u in range(t):
                if seen[u, word] & bit:
                    earlier += 1
            if earlier:  # not the owner: the earlier tasks but the owner have aliases before
                flat[i] = (first + earlier - 1) | (entry & _FIRST)
        p = stop_t
        t += 1


_CHUNK_WORDS = 256  # bitmap words counted per job chunk


def build_aliases(offsets: np.ndarray, bounds: np.ndarray, task_rows: np.ndarray,
                  num_vertices: int, threads: int) -> Aliases:
    """Mark first touches and move other tasks' corners of shared rows to alias rows,
    in place in ``offsets``.

    Args:
        offsets: (N, d+1) int32 vertex rows (id + 1, in first-touch order) of each
            pixel's corners.
        bounds: (T + 1,) int64 pixel bounds of the mean-field tasks.
        task_rows: (T, 2) the smallest and largest row each task touches.
        num_vertices: M, the lattice's vertices (rows 1 .. M).
        threads: threads to use.
    """
    tasks = bounds.shape[0] - 1
    words = (num_vertices + 1 + _WORD - 1) // _WORD
    seen = np.zeros((tasks, words), np.uint64)
    parallel.run([(_mark_first_touches, (offsets, bounds, seen), tasks, 1)], threads)
    chunks = -(-words // _CHUNK_WORDS)
    counts = np.zeros((chunks, 2), np.int64)
    parallel.run([(_count_shared, (seen, counts, _CHUNK_WORDS), chunks, 1)], threads)
    firsts = np.zeros((chunks, 2), np.int64)
    firsts[1:] = np.cumsum(counts, axis=0)[:-1]
    firsts[:, 1] += num_vertices + 1
    total = counts.sum(axis=0)
    shared = np.empty(int(total[0]), np.int64)
    starts = np.empty(int(total[0]) + 1, np.int64)
    starts[-1] = num_vertices + 1 + int(total[1])
    alias_of = np.full(num_vertices + 1, -1, np.int32)
    parallel.run([(_list_shared, (seen, firsts, _CHUNK_WORDS, shared, starts, alias_of),
                   chunks, 1)], threads)
    older = np.zeros(tasks, np.int64)  # the last row tasks before t reach
    older[1:] = np.maximum.accumulate(task_rows[:-1, 1])
    parallel.run([(_redirect, (offsets, bounds, older, seen, alias_of),
                   int(bounds[-1] - bounds[1]))], threads)
    return Aliases(shared, starts, int(starts[-1]))


# ---------------------------------------------------------------- mean field, per iteration


@njit(cache=True, nogil=True)
def gather_aliases(splats, shared, starts, groups, start, stop):
    """splats[shared[s]] += its alias rows in task order, s in [start, stop); ``groups``
    as meanfield.blur_axis takes them."""
    lanes = simd.LANES * len(groups)
    if splats.shape[1] != lanes:
        raise ValueError("gather_aliases: rows of another length than groups say")
    for s in range(start, stop):
        v = shared[s]
        for a in range(starts[s], starts[s + 1]):
            for lane in range(0, lanes, simd.LANES):
                simd.axpy(splats, v, splats, a, lane, np.float32(1.0))


@njit(cache=True, nogil=True)
def apply_matrix(splats, gain, start, stop):
    """A full compatibility on vertex rows [start, stop) + 1, in place: row j of
    ``gain`` is what label j adds to each label."""
    lanes = splats.shape[1]
    total = np.empty((1, lanes), np.float32)
    for v in range(start + 1, stop + 1):
        for lane in range(0, lanes, simd.LANES):
            simd.copy(total, 0, splats, v, lane)
        meanfield.apply_matrix_row(splats, v, total, gain)


@njit(cache=True, nogil=True)
def copy_to_aliases(messages, shared, starts, groups, start, stop):
    """Each alias row of shared[s] gets its vertex's messages, s in [start, stop);
    ``groups`` as meanfield.blur_axis takes them."""
    lanes = simd.LANES * len(groups)
    if messages.shape[1] != lanes:
        raise ValueError("copy_to_aliases: rows of another length than groups say")
    for s in range(start, stop):
        v = shared[s]
        for a in range(starts[s], starts[s + 1]):
            for lane in range(0, lanes, simd.LANES):
                simd.copy(messages, a, messages, v, lane)


def messages(kernels: list[tuple], threads: int) -> list[np.ndarray]:
    """The next pass's messages of lattices with aliases: gather the aliases, apply the
    compatibility, blur, copy the messages to the aliases.

    One lattice after the other, the one with the most axes first (DeepLab's bilateral
    lattice, then its Gaussian one), so each lattice's buffers have the last-level cache
    to themselves: 3-4% faster than both lattices' axes in shared regions with the
    earlier, slower blur, within 1% since (150.2 against 150.8 ms a call at 512 x 512).

    Args:
        kernels: per lattice, (splats, first, second, aliases, gain, diagonal,
            neighbours): the splat buffer and the blur's two ping-pong buffers (all
            (aliases.rows, lanes), row 0 zero), the lattice's :class:`Aliases`, the
            gain as ``gather_messages`` takes it, and the (d+1, M, 2) neighbours.
        threads: threads to use.

    Returns:
        Per lattice, the buffer (first or second) that holds the messages.
    """
    results = [None] * len(kernels)
    for i in sorted(range(len(kernels)), key=lambda i: -kernels[i][6].shape[0]):
        results[i] = _lattice_messages(*kernels[i], threads)
    return results


def _lattice_messages(splats: np.ndarray, first: np.ndarray, second: np.ndarray,
                      lattice_aliases: Aliases, gain: np.ndarray, diagonal: bool,
                      nbr: np.ndarray, threads: int) -> np.ndarray:
    """:func:`messages` of one lattice; returns the buffer that holds them."""
    groups = simd.lane_groups(splats.shape[1])
    shared, starts = lattice_aliases.shared, lattice_aliases.starts
    parallel.run([(gather_aliases, (splats, shared, starts, groups), shared.shape[0])], threads)
    if not diagonal:
        parallel.run([(apply_matrix, (splats, gain), nbr.shape[1])], threads)
    # Axis 0 reads the splats and applies a diagonal compatibility (a full one is in place).
    parallel.run([(meanfield.scaled_blur_axis,
                   (splats, first, nbr, 0, groups, gain if diagonal else None), nbr.shape[1])],
                 threads)
    for axis in range(1, nbr.shape[0]):
        src, dst = (first, second) if axis % 2 else (second, first)
        parallel.run([(meanfield.blur_axis, (src, dst, nbr, axis, groups), nbr.shape[1])], threads)
    result = first if nbr.shape[0] % 2 else second
    parallel.run([(copy_to_aliases, (result, shared, starts, groups), shared.shape[0])], threads)
    return result
