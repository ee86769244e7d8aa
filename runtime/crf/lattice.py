"""Permutohedral lattice (Adams, Baek & Davis 2010) in Numba, laid out for mean field.

Reproduces the lattice of Kraehenbuehl's DenseCRF (the code behind pydensecrf): the
same elevation, float32 rounding, rank tie-breaking, vertex keys and blur order, so
filtering matches it to float rounding. The layout differs, for speed on few cores:

- points are embedded and hashed in chunks in parallel, 128 at a time, each chunk into
  its own tables of simplices and vertices, then merged (see
  :mod:`tseg.runtime.crf.simplices` and :mod:`tseg.runtime.crf.hashing`); a point
  whose simplex its chunk has seen reads the corners' ids from that simplex's row,
  one lookup. Lattices whose keys fill a small box (the Gaussian kernel's) skip hashing:
  a key is its slot in a direct-addressed table (:mod:`tseg.runtime.crf.direct`);
- per point, the corners' vertex rows + 1 and weights (N, d+1), used by both the
  splat and the slice of :mod:`tseg.runtime.crf.meanfield`; vertex row 0 is a zero
  row standing for a missing blur neighbour;
- the symmetric normalisation is folded into the weights.

Every kernel is compiled with ``cache=True`` (paid once per machine) and ``nogil=True``
(callers may run a CRF beside other work).
"""

import itertools
from dataclasses import dataclass

import numpy as np
from numba import njit

from tseg.runtime.crf import direct, hashing, meanfield, normalise, parallel, simplices, workspace
from tseg.runtime.crf.aliases import Aliases, build_aliases, wants_aliases
from tseg.runtime.crf.embed import (
    EMBED_BLOCK,
    barycentric,
    elevated_bounds,
    embed_block,
    ranks,
    scale_factors,
)


@njit(cache=True, nogil=True)
def hash_chunks(features, scale, low, units, box, starts, found, counts, offsets, bary,
                start, stop):
    """Embed and hash the points of chunks [start, stop), each into its own tables.

    Chunk c covers points starts[c] .. starts[c+1]; its local vertex ids go to
    ``offsets``, its keys to ``found`` from row starts[c] * (d+1), their number to
    ``counts[c]``; ``bary`` gets every point's barycentric weights. With a direct
    layout (``box`` not empty), corners are marked in the box and ``offsets`` get box
    indices instead (see :mod:`tseg.runtime.crf.direct`).
    """
    d = features.shape[1]
    elev = np.empty((d + 1, EMBED_BLOCK), np.float32)
    rem0 = np.empty((d + 1, EMBED_BLOCK), np.float32)
    rank = np.empty((d + 1, EMBED_BLOCK), np.float32)
    scratch = np.empty((d + 2, EMBED_BLOCK), np.float32)
    tail = np.zeros((EMBED_BLOCK, d), np.float32)
    skeys = np.empty((3, EMBED_BLOCK), np.int64)
    block = np.empty((2, EMBED_BLOCK), np.int64)
    corners = np.empty((d + 1, 2, EMBED_BLOCK), np.int64)
    hashes = np.empty((d + 1, EMBED_BLOCK), np.int64)
    corner = np.empty(EMBED_BLOCK, np.int64)
    most = 0
    for c in range(start, stop):
        most = max(most, starts[c + 1] - starts[c])
    hashed = box.shape[0] == 0  # else a direct layout: no tables
    # One pair of tables for all the chunks, emptied after each (their slots are listed),
    # big enough that a chunk's simplices (one a point at most) never outgrow theirs:
    # doubling a table and rehashing cost more than filling a bigger one at first.
    slots = 1
    while hashed and slots < 2 * (most + EMBED_BLOCK):
        slots *= 2
    table = simplices.simplex_table(slots, d + 1)
    ids = table.view(np.int32)
    vertices = hashing.vertex_table(slots)  # grows where vertices outnumber points
    sslots = np.empty(most if hashed else 0, np.int32)
    vslots = np.empty(most * (d + 1) if hashed else 0, np.int32)
    sizes = np.zeros(2, np.int64)
    for c in range(start, stop):
        chunk_found = found[starts[c] * (d + 1):starts[c + 1] * (d + 1)]
        for p0 in range(starts[c], starts[c + 1], EMBED_BLOCK):
            # Every call here passes whole arrays to a kernel without calls or raises, so
            # that Numba drops their reference counting (~5 ns an array, per block).
            count = min(EMBED_BLOCK, starts[c + 1] - p0)  # a chunk's last block may be partial
            if p0 + EMBED_BLOCK <= features.shape[0]:  # (then points past it are ignored)
                embed_block(features, p0, scale, elev, rem0, rank, scratch)
            else:  # the features' last, partial block: embed a zero-padded copy
                tail[:count] = features[p0:p0 + count]
                embed_block(tail, 0, scale, elev, rem0, rank, scratch)
            ranks(elev, rem0, rank, scratch)
            barycentric(elev, rem0, rank, count, scratch, bary, p0)
            hashing.simplex_keys(rem0, rank, count, low, units, skeys)
            if not hashed:
                direct.mark_corners(rank, skeys, count, units, corner, box, offsets, p0)
                continue
            if 2 * (sizes[1] + count) >= table.shape[0]:  # keep the tables at most half full
                table = simplices.grow_simplices(table, sslots, sizes[1])
                ids = table.view(np.int32)
            if 2 * (sizes[0] + count * (d + 1)) >= vertices.shape[0]:
                vertices = hashing.grow_vertices(vertices, chunk_found, vslots, sizes[0])
            new = simplices.find_simplices(skeys, count, table, sizes, sslots, block)
            if new:
                hashing.block_corners(rank, skeys, count, units, corners, hashes)
                simplices.add_corners(corners, hashes, block, new, vertices, chunk_found,
                                      sizes, vslots, ids)
            simplices.write_corners(ids, block, count, offsets, p0)
        counts[c] = sizes[0]
        simplices.clear(table, vertices, sizes, sslots, vslots)


@dataclass(frozen=True)
class Lattice:
    """A permutohedral lattice over N points with symmetric normalisation folded in.

    Filtering Q (N, L) is ``s * K(s * Q)`` with ``s = 1 / sqrt(K 1)``, as the
    reference's default NORMALIZE_SYMMETRIC: ``s`` is baked into the weights, which
    serve both the splat and the slice; the slice's constant ``alpha`` is left to the
    caller (mean field folds it into the compatibility).

    The arrays live in pooled memory owned by ``lease``: each user of the lattice
    (a DenseCRF, a mean-field state, the Gaussian lattice cache) retains the lease and
    releases it when done; after the last release the arrays must not be read.

    Attributes:
        offsets: (N, d+1) int32, vertex index + 1 of each pixel's simplex corners.
        weights: (N, d+1) float32, barycentric weight * s[pixel].
        neighbours: (d+1, M, 2) int32 blur neighbours (index + 1, 0 when missing).
        alpha: the slice's scale, 1 / (1 + 2**-d).
        task_rows: (T, 2) int64, the smallest and largest vertex row touched by each
            mean-field splat task's pixels (see meanfield.task_bounds).
        lease: the owner of the arrays' memory.
        aliases: for a big lattice (``aliases.wants_aliases``), its alias rows; then
            ``offsets`` hold alias rows and first-touch bits (see
            :mod:`tseg.runtime.crf.aliases`). None for the others.
    """

    offsets: np.ndarray
    weights: np.ndarray
    neighbours: np.ndarray
    alpha: float
    task_rows: np.ndarray
    lease: workspace.Lease
    aliases: Aliases | None = None

    @property
    def num_vertices(self) -> int:
        return self.neighbours.shape[1]

    @property
    def nbytes(self) -> int:
        return self.offsets.nbytes + self.weights.nbytes + self.neighbours.nbytes


_CHUNK_POINTS = 16384  # points hashed per pair of tables (see hash_chunks)
# Chunks start on multiples of 64 points, as when that was the embedding block: the
# normalisation sums ones per chunk, so other bounds would change its float rounding.
_CHUNK_ALIGN = 64
_DIRECT_SLOTS_PER_POINT = 8  # a key box up to this size is indexed directly, not hashed


def _chunk_starts(size: int, n: int) -> np.ndarray:
    """The hashing chunks' first points (and ``size``): each mean-field task's pixels
    (meanfield.task_bounds of the n real ones) in equal chunks of at most about
    _CHUNK_POINTS points, on multiples of _CHUNK_ALIGN (see there), so that a chunk's
    points lie in one task, but for up to _CHUNK_ALIGN - 1 points of the next
    (renumber_by_tasks reads a chunk's task from its first point)."""
    bounds = meanfield.task_bounds(n)
    bounds[-1] = size  # the padding points go with the last task
    per_task = max(1, -(-max(b - a for a, b in itertools.pairwise(bounds)) // _CHUNK_POINTS))
    starts = {min(size, -(-(a + (b - a) * j // per_task) // _CHUNK_ALIGN) * _CHUNK_ALIGN)
              for a, b in itertools.pairwise(bounds) for j in range(per_task)}
    return np.array(sorted(starts | {size}), np.int64)


class _Build:
    """One lattice under construction: each method returns the parallel.run jobs of
    one stage, so that the stages of several lattices run side by side."""

    def __init__(self, features: np.ndarray, bounds: tuple, n: int, threads: int,
                 scratch: workspace.Lease) -> None:
        """features: (P, d) points, the first n real, the rest the reference's zero
        padding (it embeds 4 points at a time); bounds: (d,) lower and upper bounds
        of every feature; scratch: the lease of the build's temporary arrays (the
        lattice's own go to ``self.lease``)."""
        self.n, d = n, features.shape[1]
        self.threads = threads
        self.features = features
        self.scratch = scratch
        self.lease = workspace.Lease()
        size = features.shape[0]
        self.scale = scale_factors(d)
        self.low, self.units, box = hashing.key_layout(
            *elevated_bounds(*bounds, self.scale), d, direct_limit=_DIRECT_SLOTS_PER_POINT * size)
        self.direct = box > 0
        # A direct layout's box (int32 slots, zero = unmarked), else an empty one.
        self.box = scratch.array((box,), np.int32, zero=True, threads=threads)
        self.starts = _chunk_starts(size, n)
        chunks = self.starts.shape[0] - 1
        self.found = scratch.array((0 if self.direct else size * (d + 1), 2), np.int64)
        self.counts = np.zeros(chunks, np.int64)
        self.offsets = self.lease.array((size, d + 1), np.int32)
        self.bary = scratch.array((size, d + 1), np.float32)
        self.finished = False  # finish_jobs' work done (see merge_jobs)

    def hash_jobs(self):
        args = (self.features, self.scale, self.low, self.units, self.box, self.starts,
                self.found, self.counts, self.offsets, self.bary)
        return [(hash_chunks, args, self.counts.shape[0], 1)]

    def merge_jobs(self, finish: bool = False):
        """Serial: numbers the vertices (the chunks' hashed ones, or the box's), then
        finds each chunk's band of vertex rows (see :mod:`.normalise`).

        ``finish``: a direct layout's numbering is short; the rest of its build
        (finish_jobs, then none) runs on the same thread, beside another lattice's
        longer merge (DeepLab's parameters at 512 x 512: 4.1 ms of merge against 1.9
        ms of numbering, the other thread idle)."""
        self.scratch.give_back(self.features)  # embedded: no longer read
        del self.features

        def job(start: int, stop: int) -> None:
            if self.direct:
                self.vertices = direct.number_vertices(self.box)
                self.remap = self.box
            else:
                self._merge()
            self.bands = np.empty((self.counts.shape[0], 2), np.int64)
            normalise.chunk_bands(self.offsets, self.remap, self.direct, self.starts,
                                  self.counts, self.bands, 0, self.counts.shape[0])
            if finish:
                for kernel, args, items, *_ in self._finish(threads=1):
                    kernel(*args, 0, items)
                self.finished = True
        return [(job, (), 1)]

    def _merge(self) -> None:
        self.remap = self.scratch.array((self.found.shape[0],), np.int32)
        total = int(self.counts.sum())
        slots = 1 << max(10, (2 * total - 1).bit_length())  # at most half full
        self.keys = self.scratch.array((slots,), np.int64)
        self.keys.fill(-1)
        self.all_vertices = self.scratch.array((total, 2), np.int64)
        dp1 = self.offsets.shape[1]
        bounds = meanfield.task_bounds(self.n)
        tasks = len(bounds) - 1
        chunk_task = np.minimum(np.searchsorted(bounds, self.starts[:-1], side="right") - 1,
                                tasks - 1)  # of its first point (padding: the last task)
        spans = self.scratch.array((total, 2), np.int64)
        vertex_slots = self.scratch.array((total,), np.int64)
        m = hashing.merge_chunks(self.found, self.counts, self.starts, dp1, self.keys,
                                 self.all_vertices, self.remap, chunk_task, spans, vertex_slots)
        if tasks > 1 and not wants_aliases(m, self.n):  # banded accumulators: shorter bands
            hashing.renumber_by_tasks(spans, tasks, vertex_slots, self.keys, self.all_vertices,
                                      self.counts, self.starts, dp1, self.remap, m)
        self.scratch.give_back(spans)
        self.scratch.give_back(vertex_slots)
        self.vertices = self.all_vertices[:m]
        self.scratch.give_back(self.found)
        del self.found

    def finish_jobs(self):
        """Global vertex rows in the offsets and each chunk's splat of ones into its
        band; blur neighbours by table lookups (none left when merge_jobs finished the
        lattice)."""
        return [] if self.finished else self._finish(self.threads)

    def _finish(self, threads: int) -> list:
        m = self.vertices.shape[0]
        self.neighbours = self.lease.array((self.offsets.shape[1], m, 2), np.int32,
                                           zero=not self.direct, threads=threads)
        self.band_base, size = normalise.band_starts(self.bands)
        self.ones = self.scratch.array((size,), np.float32, zero=True, threads=threads)
        deltas = hashing.neighbour_deltas(self.units)
        neighbours = ((direct.find_neighbours, (self.vertices, self.box, deltas, self.neighbours))
                      if self.direct else
                      (hashing.find_neighbours, (self.vertices, self.keys, deltas,
                                                 self.neighbours)))
        return [(normalise.remap_and_splat_ones,
                 (self.offsets, self.remap, self.direct, self.starts, self.n, self.bary,
                  self.ones, self.bands, self.band_base), self.counts.shape[0], 1),
                (*neighbours, m)]

    def drop_tables(self) -> None:
        """Return the vertex tables (built): only bary and ones are read from now on."""
        self.scratch.give_back(self.remap)
        if self.box is not self.remap:
            self.scratch.give_back(self.box)
        del self.remap, self.box, self.vertices
        if "keys" in self.__dict__:
            self.scratch.give_back(self.keys)
            self.scratch.give_back(self.all_vertices)
            del self.keys, self.all_vertices


def build_lattices(features: list[tuple], n: int, threads: int,
                   scratch: workspace.Lease) -> list[Lattice]:
    """Build lattices and their symmetric normalisation, several at once.

    Args:
        features: per lattice, what :func:`tseg.runtime.crf.features.pixel_features`
            returns: (padded_points(n), d) float32 points already divided by the
            kernel widths, zero past the n real ones (d may differ between lattices),
            and the features' bounds. Given back to ``scratch`` once embedded.
        n: real points (pixels).
        threads: threads to use.
        scratch: the lease of the temporary arrays (the features' too), the caller's.

    Returns:
        One :class:`Lattice` per feature array, its lease owned once, by the caller.
    """
    builds = []
    try:
        for f, bounds in features:
            builds.append(_Build(f, bounds, n, threads, scratch))
        parallel.run([job for b in builds for job in b.hash_jobs()], threads)
        # A direct layout finishes during a hashed lattice's serial merge when that
        # merge is long: when the hashed chunks found a vertex per two points or more
        # (DeepLab's parameters; the merge takes about 14 ns a vertex, a direct
        # lattice's finish about 11 ns a point).
        merged = sum(int(b.counts.sum()) for b in builds if not b.direct)
        parallel.run([job for b in builds
                      for job in b.merge_jobs(finish=b.direct and 2 * merged >= n)], threads)
        parallel.run([job for b in builds for job in b.finish_jobs()], threads)
        for b in builds:
            b.drop_tables()  # lower the peak
        parts = [(b.offsets[:n], b.bary[:n], b.neighbours, (b.ones, b.bands, b.band_base))
                 for b in builds]
        leases = [b.lease for b in builds]
        lattices = _normalise(parts, leases, threads)
    except BaseException:
        for b in builds:
            b.lease.release()
        raise
    for b in builds:
        scratch.give_back(b.bary)
        scratch.give_back(b.ones)
    return lattices


def _normalise(parts: list, leases: list, threads: int) -> list[Lattice]:
    """Filter ones on each lattice and fold s = 1 / sqrt(K 1) into the weights."""
    n = parts[0][0].shape[0]
    values = [np.zeros(nbr.shape[1] + 1, np.float32) for _, _, nbr, _ in parts]
    scratch = [np.zeros_like(v) for v in values]
    parallel.run([(normalise.gather_ones, (v, *ones), nbr.shape[1])
                  for v, (_, _, nbr, ones) in zip(values, parts, strict=True)], threads)
    parallel.run([(normalise.blur_ones, (v, w, nbr), 1)
                  for v, w, (_, _, nbr, _) in zip(values, scratch, parts, strict=True)], threads)
    pending, jobs = [], []
    bounds = np.array(meanfield.task_bounds(n), np.int64)
    for v, w, (offsets, bary, nbr, _), lease in zip(values, scratch, parts, leases, strict=True):
        blurred = v if nbr.shape[0] % 2 == 0 else w
        alpha = np.float32(1.0 / (1.0 + 2.0 ** -(nbr.shape[0] - 1)))
        weights = lease.array(bary.shape)
        rows = np.empty((bounds.shape[0] - 1, 2), np.int64)
        jobs.append((normalise.symmetric_weights, (blurred, offsets, bary, alpha, weights, bounds, rows),
                     rows.shape[0], 1))
        pending.append((offsets, weights, nbr, float(alpha), rows, lease))
    parallel.run(jobs, threads)
    return [Lattice(offsets, weights, nbr, alpha, rows, lease,
                    aliases=build_aliases(offsets, bounds, rows, nbr.shape[1], threads)
                    if wants_aliases(nbr.shape[1], n) else None)
            for offsets, weights, nbr, alpha, rows, lease in pending]
