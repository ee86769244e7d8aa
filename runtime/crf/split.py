"""Splat passes shared by more threads than mean field has tasks, with the same sums.

The pixel pass splats in tasks (:func:`tseg.runtime.crf.meanfield.task_bounds`) fixed by
the image size: each vertex gets, task by task, the sum of its task's splats in pixel
order, so the results do not depend on the number of threads. Fused (one thread per
task: slice, softmax and splat in one pass over the task's pixels), the pass can use
no more threads than there are tasks (4 up to 1 Mpixel). With many more threads it runs
in two phases instead, each shared among all of them:

1. the pixel pass writes each pixel's exponentials ``x`` and ``scale`` (Q = x * scale,
   pydensecrf's softmax) to pixel-major buffers, in chunks of any size: no splat;
2. each task's rows (vertex rows, and alias rows where the lattice has them) are cut
   into pieces, and the runs of pixels with a corner on each piece are listed once per
   call. A job per piece then splats those pixels' corners on its rows, with the fused
   pass's operations, in the same order: ``acc[row] = fma(x[pixel], weight *
   scale[pixel], acc[row])`` (a task's first touch of an alias row stores). Each row is
   written by one piece, so no two jobs meet.

Every row thus gets the same additions in the same order as in the fused pass, and the
results stay bit for bit those of one thread. With two phases a 512 x 512 call does about
1.4 times the fused pass's work (x goes to memory and back; with 12 classes its buffers
take 17.8 MB), so the fused pass stays wherever it can keep the threads busy: up to
SPLIT_THREADS_PER_TASK threads per task.
"""

from __future__ import annotations

import itertools

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel, simd, workspace
from tseg.runtime.crf.lattice import Lattice

SPLIT_THREADS_PER_TASK = 2  # more threads than this per task: the two-phase pass
_PIECES_PER_THREAD = 2  # pieces per thread and lattice, so that uneven ones even out


def wanted(tasks: int, threads: int) -> bool:
    """Whether a pass in ``tasks`` splat tasks on ``threads`` threads runs in two phases
    (see the module docstring)."""
    return threads > SPLIT_THREADS_PER_TASK * tasks


@njit(cache=True, nogil=True, inline="always")
def _piece(row, lo, factor, first_alias, alias_factor):
    """The piece of a task's row: its vertex rows from lo on and its alias rows from
    first_alias on are each cut into equal parts (factor: pieces * 2**32 // rows, so a
    multiplication, not a division, per corner)."""
    if row < first_alias:
        return ((row - lo) * factor) >> 32
    return ((row - first_alias) * alias_factor) >> 32


@njit(cache=True, nogil=True)
def _runs(offsets, chunks, cuts, pieces, runs, counts, start, stop):
    """Chunks [start, stop) (chunks[c] = first pixel, last pixel + 1, task; cuts[t] =
    lo, factor, first alias, alias factor): the runs of consecutive pixels with a
    corner on piece j of the task's rows, in pixel order. Counted into counts[c, j]
    when ``runs`` is empty, else written as (first, last + 1) pixel pairs from row
    counts[c, j] of ``runs`` on (``counts`` is then consumed)."""
    dp1 = offsets.shape[1]
    write = runs.shape[0] > 0
    last = np.empty(pieces, np.int64)  # the last pixel listed on each piece
    for c in range(start, stop):
        t = chunks[c, 2]
        lo, factor, first_alias, alias_factor = cuts[t, 0], cuts[t, 1], cuts[t, 2], cuts[t, 3]
        last[:] = -2
        for p in range(chunks[c, 0], chunks[c, 1]):
            for r in range(dp1):
                row = np.int64(offsets[p, r] & simd.ROW_BITS)
                j = _piece(row, lo, factor, first_alias, alias_factor)
                if last[j] == p:
                    continue
                if last[j] != p - 1:  # a new run
                    if write:
                        runs[counts[c, j], 0] = p
                    counts[c, j] += 1
                if write:
                    runs[counts[c, j] - 1, 1] = p + 1
                last[j] = p


@njit(cache=True, nogil=True)
def splat_pieces(x, scale, offsets, weights, acc, shifts, cuts, pieces, starts, runs, groups,
                 corners, start, stop):
    """Splat pieces [start, stop): piece k (task k // pieces, its rows' part k % pieces)
    splats the corners on its rows of the pixels in runs[starts[k]:starts[k + 1]].

    Args:
        x: (N, lanes) each pixel's exponentials; scale: (N,) 1 / their sum.
        offsets, weights: the lattice's (N, d+1) corner rows and weights.
        acc: the splat target: banded accumulators, or the splat buffer (alias rows).
        shifts: (T,) int64 row shift of each task (banded accumulators), or None: the
            rows carry first-touch bits, and a first touch stores.
        cuts, pieces: how each task's rows are cut (see _runs).
        starts, runs: the pieces' (first, last + 1) pixel runs.
        groups: :func:`tseg.runtime.crf.simd.lane_groups` of the rows.
        corners: a tuple of d + 1 items: the corners per pixel as a compile-time
            constant (the loop over them unrolls).
    """
    lanes = simd.LANES * len(groups)
    if x.shape[1] != lanes or acc.shape[1] != lanes or offsets.shape[1] != len(corners):
        raise ValueError("splat_pieces: rows of another length than groups or corners say")
    # Flat views and unsigned indices: no negative-index checks per corner.
    flat_rows, flat_weights = offsets.reshape(-1), weights.reshape(-1)
    dp1 = np.uint64(len(corners))
    for k in range(start, stop):
        t, j = k // pieces, k % pieces
        lo, factor, first_alias, alias_factor = cuts[t, 0], cuts[t, 1], cuts[t, 2], cuts[t, 3]
        shift = 0 if shifts is None else shifts[t]
        for run in range(starts[k], starts[k + 1]):
            for p in range(runs[run, 0], runs[run, 1]):
                s = scale[np.uint64(p)]
                for r in range(len(corners)):
                    i = np.uint64(p) * dp1 + np.uint64(r)
                    entry = flat_rows[i]
                    row = np.int64(entry & simd.ROW_BITS)
                    if _piece(row, lo, factor, first_alias, alias_factor) != j:
                        continue
                    weight = flat_weights[i] * s  # as the fused pass: float32 product first
                    if shifts is None:
                        if entry < 0:  # the task's first touch of this row: store
                            for lane in range(0, lanes, simd.LANES):
                                simd.zero(acc, row, lane)
                    else:
                        row += shift
                    for lane in range(0, lanes, simd.LANES):
                        simd.axpy(acc, row, x, p, lane, weight)


class SplitSplat:
    """The two-phase pass's buffers and pixel runs for one mean-field state."""

    def __init__(self, lattices: list[Lattice], targets: list[list[tuple]], bounds: list[int],
                 lanes: int, threads: int, lease: workspace.Lease) -> None:
        """Args:
            lattices: the (Gaussian, bilateral) lattices.
            targets: per lattice, per task, the fused pass's (accumulator, shift).
            bounds: (T + 1,) pixel bounds of the tasks.
            lanes: lanes per row; threads: threads of the passes.
            lease: where the buffers come from.
        """
        n = bounds[-1]
        tasks = len(bounds) - 1
        self.pieces = max(1, -(-_PIECES_PER_THREAD * threads // tasks))
        self.x = lease.array((n, lanes))
        self.scale = lease.array((n,))
        groups = simd.lane_groups(lanes)
        # The listing's chunks: pixel ranges within one task each, about as many as
        # parallel.run would make, so that the listing, too, uses every thread.
        per_task = max(1, -(-threads * parallel.CHUNKS_PER_THREAD // tasks))
        chunks = np.array([(a + (b - a) * i // per_task, a + (b - a) * (i + 1) // per_task, t)
                           for t, (a, b) in enumerate(itertools.pairwise(bounds))
                           for i in range(per_task)], np.int64)
        cuts = [self._cuts(lattice, tasks) for lattice in lattices]
        self._jobs = []
        for lattice, per_task_targets, lattice_cuts, (starts, runs) in zip(
                lattices, targets, cuts, self._list(lattices, chunks, cuts, threads), strict=True):
            acc, shift = per_task_targets[0]
            shifts = None if shift is None else np.array([s for _, s in per_task_targets], np.int64)
            self._jobs.append((splat_pieces, (self.x, self.scale, lattice.offsets,
                                              lattice.weights, acc, shifts, lattice_cuts,
                                              self.pieces, starts, runs, groups,
                                              (0,) * lattice.offsets.shape[1]),
                               tasks * self.pieces, 1))

    def _cuts(self, lattice: Lattice, tasks: int) -> np.ndarray:
        """(T, 4) int64 per task: its first vertex row and the factor that cuts its
        vertex rows into pieces, the first alias row and the factor for the aliases."""
        first_alias = lattice.num_vertices + 1
        aliases = (lattice.aliases.rows if lattice.aliases else first_alias) - first_alias
        spans = lattice.task_rows[:, 1] - lattice.task_rows[:, 0] + 1
        return np.stack([lattice.task_rows[:, 0], (self.pieces << 32) // spans,
                         np.full(tasks, first_alias),
                         np.full(tasks, (self.pieces << 32) // max(1, aliases))],
                        axis=1).astype(np.int64)

    def _list(self, lattices: list[Lattice], chunks: np.ndarray, cuts: list[np.ndarray],
              threads: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per lattice, its pieces' (T * pieces + 1,) starts and (R, 2) pixel runs: every
        lattice's runs counted in one parallel region, then written in another."""
        pieces = self.pieces
        tasks = cuts[0].shape[0]
        counts = [np.zeros((len(chunks), pieces), np.int64) for _ in lattices]
        none = np.empty((0, 2), np.int64)
        parallel.run([(_runs, (lattice.offsets, chunks, lattice_cuts, pieces, none, count),
                       len(chunks), 1)
                      for lattice, lattice_cuts, count in zip(lattices, cuts, counts, strict=True)],
                     threads)
        listed, fills = [], []
        for lattice, lattice_cuts, count in zip(lattices, cuts, counts, strict=True):
            # Piece by piece within a task, chunk by chunk within a piece: pixel order.
            by_piece = count.reshape(tasks, -1, pieces).transpose(0, 2, 1).reshape(-1)
            ends = np.cumsum(by_piece)
            places = (ends - by_piece).reshape(tasks, pieces, -1)
            runs = np.empty((int(ends[-1]), 2), np.int64)
            listed.append((np.append(places[:, :, 0].reshape(-1), ends[-1]), runs))
            places = np.ascontiguousarray(places.transpose(0, 2, 1).reshape(-1, pieces))
            fills.append((_runs, (lattice.offsets, chunks, lattice_cuts, pieces, runs, places),
                          len(chunks), 1))
        parallel.run(fills, threads)
        return listed

    def splat_jobs(self) -> list[tuple]:
        """The second phase's jobs (parallel.run's), once the first wrote x and scale."""
        return self._jobs
