"""Vertex keys and tables of the permutohedral lattice: packed keys, merging, neighbours.

A vertex key is d integer coordinates (the (d+1)-th follows from their zero sum).
Each coordinate is offset to be non-negative and packed into a bit field of one of
two int64 words, sized from the range the points can reach, so a key is compared and
hashed as two integers and a blur neighbour's key is the key plus a constant.

A vertex table is a power of two of int64 slots, each -1 or the vertex's id below 31
bits of its key's hash, the keys themselves in a (vertices, 2) array: 8 bytes a slot,
and a probe reads a key only when the hash bits agree. Points are hashed in chunks in
parallel (:mod:`tseg.runtime.crf.simplices`), each into its own tables, numbering
vertices in first-touch order; a short serial merge then numbers the chunks' vertices
globally. That numbering equals a serial first-touch numbering of all points, so the
lattice does not depend on the number of threads.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from tseg.runtime.errors import TsegError

_WORD_BITS = 62
# Elevated coordinates are float32: past 2**24 they are no longer exact integers and a
# point could land outside the key box computed from the bounds.
_MAX_COORDINATE = float(2**24)


def key_layout(lower: np.ndarray, upper: np.ndarray, d: int,
               direct_limit: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """How vertex keys whose coordinates j lie in [lower[j], upper[j]] become integers.

    Coordinate j, offset by ``low[j]`` to be non-negative, adds ``units[j, w]`` per
    step to key word w, leaving room for the simplex corners and their blur
    neighbours, so that a corner or a neighbour is a key plus a constant. When the
    coordinates' box has at most ``direct_limit`` points, word 0 is a mixed-radix
    index into that box (a direct-addressed table, no hashing); otherwise each
    coordinate gets a bit field in one of two words.

    Args:
        lower, upper: (d,) bounds of the points' elevated coordinates.
        d: the feature dimension.
        direct_limit: the largest box to index directly.

    Returns:
        (low, units, size): (d,) and (d, 2) int64, and the box size when direct, else 0.
    """
    if not (np.isfinite(lower).all() and np.isfinite(upper).all()
            and max(np.abs(lower).max(), np.abs(upper).max()) <= _MAX_COORDINATE):
        raise TsegError("CRF features span too wide a range (lattice coordinates beyond "
                        "2**24): use larger kernel widths (sxy, srgb) for this image")
    margin = 4 * (d + 1)
    low = np.floor(lower).astype(np.int64) - margin
    span = np.ceil(upper).astype(np.int64) + margin - low + 1
    units = np.zeros((d, 2), np.int64)
    size = int(np.prod(span.astype(np.float64)))
    if d == 2 and span[0] * (span[0] + span[1]) <= 2 * direct_limit:  # about twice the box
        # Index by (c0 + c1, c0): for positions (x, y), c0 + c1 grows with y alone, so a
        # band of image rows is a band of vertex ids, and the mean-field tasks' splat
        # accumulators (one band of rows each) stay small.
        units[:, 0] = [1 + span[0], span[0]]
        return low, units, int(span[0] * (span[0] + span[1]))
    if size <= direct_limit:
        units[:, 0] = np.concatenate([[1], np.cumprod(span)[:-1]])
        return low, units, size
    bits = np.ceil(np.log2(span + 1)).astype(np.int64)
    used = [0, 0]
    for j in range(d):
        w = 0 if used[0] + bits[j] <= _WORD_BITS else 1
        if used[w] + bits[j] > _WORD_BITS:
            raise TsegError(f"CRF features span too wide a range ({int(bits.sum())} bits of "
                            f"lattice coordinates, at most {2 * _WORD_BITS}): use larger "
                            "kernel widths (sxy, srgb) for this image")
        units[j, w] = 1 << int(used[w])
        used[w] += bits[j]
    return low, units, 0


_AHEAD = 8  # lookups of big tables are prefetched this many items ahead


@intrinsic
def prefetch(typingctx, table, row):
    """Ask the CPU to bring row ``row`` of a 1-D or 2-D table into cache (no effect on
    results): lookups then overlap their memory latency."""
    if not (isinstance(table, types.Array) and table.ndim in (1, 2)):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        index = args[1]
        if sig.args[0].ndim == 2:
            index = builder.mul(index, cgutils.unpack_tuple(builder, arr.shape, 2)[1])
        ptr = builder.gep(arr.data, [index])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(table, types.int64), codegen


@njit(cache=True, nogil=True)
def key_hash(w0, w1, w2):
    """63 bits of a multiplicative hash of key (w0, w1, w2) (wrapping unsigned products)."""
    x = ((np.uint64(w0) * np.uint64(0x9E3779B97F4A7C15))
         ^ (np.uint64(w1) * np.uint64(0xC2B2AE3D27D4EB4F))
         ^ (np.uint64(w2) * np.uint64(0x165667B19E3779F9)))
    return np.int64(x >> np.uint64(1))


@njit(cache=True, nogil=True)
def first_slot(table, hx):
    """The first slot probed for a key of hash hx in a table of a power of two slots."""
    return (hx >> 31) & (table.shape[0] - 1)


_ID = 0xFFFFFFFF  # the id bits of a vertex table's entry


@njit(cache=True, nogil=True)
def vertex_slot(table, keys, hx, w0, w1):
    """The slot of vertex key (w0, w1) of hash hx in a vertex table (linear probing),
    or of the empty slot where it would go.

    A vertex table is (slots,) int64 entries, -1 where empty, else the high 31 bits of
    the key's hash above the vertex id (see vertex_entry); vertex v's key is keys[v].
    8 bytes a slot, so the table stays in cache, and a probe reads keys[v] only when
    the hash bits agree (then almost always the key)."""
    mask = table.shape[0] - 1
    h = first_slot(table, hx)
    tag = hx >> 32
    while True:
        e = table[h]
        if e < 0:
            return h
        if e >> 32 == tag:
            v = e & _ID
            if keys[v, 0] == w0 and keys[v, 1] == w1:
                return h
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def vertex_entry(hx, v):
    """A vertex table's entry for vertex v of hash hx."""
    return ((hx >> 32) << 32) | v


@njit(cache=True, nogil=True)
def vertex_id(entry):
    """The vertex id of a vertex table's (non-empty) entry."""
    return entry & _ID


@njit(cache=True, nogil=True)
def vertex_table(size):
    """An empty vertex table of ``size`` (a power of two) slots."""
    return np.full(size, -1, np.int64)


@njit(cache=True, nogil=True)
def grow_vertices(table, keys, slots, n):
    """Twice the slots, with vertices 0 .. n - 1 (keys) rehashed; slots[v] = v's slot."""
    bigger = vertex_table(2 * table.shape[0])
    for v in range(n):
        hx = key_hash(keys[v, 0], keys[v, 1], 0)
        h = vertex_slot(bigger, keys, hx, keys[v, 0], keys[v, 1])
        bigger[h] = vertex_entry(hx, v)
        slots[v] = h
    return bigger


@njit(cache=True, nogil=True, error_model="numpy")
def simplex_keys(rem0, rank, count, low, units, out):
    """out[:, q] = (w0, w1, code) of point q's simplex, q < count: corner 0's two key
    words and the ranks, 4 bits each, which together name the simplex (rem0's and the
    ranks' last coordinates follow from the others). Loops over the block's points, so
    they vectorise.

    Args:
        rem0, rank: (d+1, B) float32 of a block of embedded points.
        low, units: the key layout (see key_layout).
        out: (3, B) int64.
    """
    for q in range(count):
        out[0, q] = 0
        out[1, q] = 0
        out[2, q] = 0
    for i in range(rem0.shape[0] - 1):
        u0 = units[i, 0]
        u1 = units[i, 1]
        lo = low[i]
        for q in range(count):
            c = np.int64(rem0[i, q]) - lo
            out[0, q] += c * u0
            out[1, q] += c * u1
            out[2, q] = (out[2, q] << 4) + np.int64(rank[i, q])


@njit(cache=True, nogil=True, error_model="numpy")
def block_corners(rank, skeys, count, units, corners, hashes):
    """corners[r, w, q] = word w of the key of corner r of point q's simplex, and
    hashes[r, q] its hash, q < count.

    Corner 0 is the simplex key's; corner r adds r to every coordinate and subtracts
    d + 1 from those of rank above d - r (the reference's "rem0 + r, or r - (d+1) where
    the rank is above d - r"). Loops over the block's points, so they vectorise.

    Args:
        rank: (d+1, B) float32 ranks of a block of embedded points.
        skeys: (3, B) int64, their simplices' keys (simplex_keys).
        units: the key layout (see key_layout).
        corners: (d+1, 2, B) int64; hashes: (d+1, B) int64.
    """
    dp1 = rank.shape[0]
    d = dp1 - 1
    for w in range(2):
        ones = np.int64(0)
        for i in range(d):
            ones += units[i, w]
        if ones == 0:  # no coordinate in this word (units are >= 0): every corner's is 0
            for r in range(dp1):
                for q in range(count):
                    corners[r, w, q] = 0
            continue
        for r in range(dp1):
            for q in range(count):
                corners[r, w, q] = skeys[w, q] + r * ones
            above = np.float32(d - r)
            for i in range(d if r > 0 else 0):
                step = dp1 * units[i, w]
                for q in range(count):
                    if rank[i, q] > above:
                        corners[r, w, q] -= step
    for r in range(dp1):
        for q in range(count):
            hashes[r, q] = key_hash(corners[r, 0, q], corners[r, 1, q], 0)


@njit(cache=True, nogil=True)
def merge_chunks(found, counts, starts, dp1, ids, vertices, remap, chunk_task, spans, slots):
    """Number every chunk's vertices globally, in chunk order (serial).

    Args:
        found: (P * (d+1), 2) int64: chunk c's keys from row starts[c] * dp1.
        counts: (chunks,) vertices per chunk.
        starts: (chunks + 1,) first point of each chunk.
        ids: an empty vertex table of at least 2 * counts.sum() slots: never grown.
        vertices: (counts.sum(), 2) int64: gets the keys by global id.
        remap: gets, per row of ``found`` in use, the global id.
        chunk_task: (chunks,) int64, the mean-field task of each chunk's points.
        spans: (counts.sum(), 2) int64: gets each vertex's first and last task.
        slots: (counts.sum(),) int64: gets each vertex's slot in ``ids``.

    Returns:
        The number of vertices M (``ids`` is then their table).
    """
    m = 0
    for c in range(counts.shape[0]):
        base = starts[c] * dp1
        task = chunk_task[c]
        for i in range(base, base + counts[c]):
            if i + _AHEAD < base + counts[c]:
                prefetch(ids, first_slot(ids, key_hash(found[i + _AHEAD, 0], found[i + _AHEAD, 1], 0)))
            hx = key_hash(found[i, 0], found[i, 1], 0)
            h = vertex_slot(ids, vertices, hx, found[i, 0], found[i, 1])
            if ids[h] < 0:
                ids[h] = vertex_entry(hx, m)
                vertices[m, 0] = found[i, 0]
                vertices[m, 1] = found[i, 1]
                spans[m, 0] = task
                slots[m] = h
                m += 1
            v = vertex_id(ids[h])
            remap[i] = v
            spans[v, 1] = task  # chunks come in task order: the last is the largest
    return m


@njit(cache=True, nogil=True)
def renumber_by_tasks(spans, tasks, slots, ids, vertices, found_counts, starts, dp1, remap, m):
    """Renumber merge_chunks' M = ``m`` vertices by their first and then their last
    mean-field task (``spans``; first-touch order within), in ``vertices``, the table
    ``ids`` and ``remap``: a task's band of accumulator rows (from the oldest vertex it
    touches to the newest, see meanfield.gather_messages) then holds the vertices it
    shares with the tasks before and after it and its own, not the vertices of earlier
    tasks that later ones reach again (at 512 x 512, 13% fewer rows; at 256 x 256, 21%).
    A permutation of the ids: the filtering does not change.

    Args:
        found_counts: (chunks,) vertices per chunk (merge_chunks' counts).
    """
    place = np.zeros(tasks * tasks + 1, np.int64)  # a counting sort by (first, last)
    for v in range(m):
        place[spans[v, 0] * tasks + spans[v, 1] + 1] += 1
    for k in range(tasks * tasks):
        place[k + 1] += place[k]
    new_id = np.empty(m, np.int64)
    keys = np.empty((m, 2), np.int64)
    for v in range(m):  # stable: first-touch order within a group
        key = spans[v, 0] * tasks + spans[v, 1]
        w = place[key]
        place[key] += 1
        new_id[v] = w
        keys[w, 0] = vertices[v, 0]
        keys[w, 1] = vertices[v, 1]
        ids[slots[v]] = (ids[slots[v]] & ~np.int64(_ID)) | w
    vertices[:m] = keys
    for c in range(found_counts.shape[0]):
        base = starts[c] * dp1
        for i in range(base, base + found_counts[c]):
            remap[i] = new_id[remap[i]]


@njit(cache=True, nogil=True)
def find_neighbours(vertices, ids, deltas, nbr, start, stop):
    """nbr[j, v, side] = id + 1 of vertex v's neighbour along axis j (0 when absent).

    ``ids``: the vertex table of ``vertices`` (M, 2). ``deltas`` (d+1, 2, 2): what the
    two key words gain for each axis and side; side 0 is side 1 negated, so one lookup
    finds both ends of an edge: vertex v looks up its side-1 neighbour n and, when n
    exists, writes nbr[j, n, 0] = v + 1 as well (v is the only vertex whose side-1
    neighbour is n). ``nbr`` must be zero beforehand. Lookups only read the table, and
    every entry has one writer: safe in parallel.
    """
    for v in range(start, stop):
        if v + _AHEAD < stop:  # the table is bigger than the caches for big lattices
            for j in range(deltas.shape[0]):
                prefetch(ids, first_slot(ids, key_hash(vertices[v + _AHEAD, 0] + deltas[j, 1, 0],
                                                vertices[v + _AHEAD, 1] + deltas[j, 1, 1], 0)))
        for j in range(deltas.shape[0]):
            w0 = vertices[v, 0] + deltas[j, 1, 0]
            w1 = vertices[v, 1] + deltas[j, 1, 1]
            n = ids[vertex_slot(ids, vertices, key_hash(w0, w1, 0), w0, w1)]
            if n >= 0:
                n = vertex_id(n)
                nbr[j, v, 1] = n + 1
                nbr[j, n, 0] = v + 1


def neighbour_deltas(units: np.ndarray) -> np.ndarray:
    """(d+1, 2, 2) int64: per axis j and side, the change of the two key words.

    As the reference: side 0 is key - 1 with coordinate j + d, side 1 is key + 1
    with coordinate j - d (for j = d, every stored coordinate moves by -1 / +1).
    """
    d = units.shape[0]
    steps = np.ones((d + 1, d), np.int64)  # side 1: coordinate i of axis j moves by this
    steps[np.arange(d), np.arange(d)] = -d
    deltas = np.empty((d + 1, 2, 2), np.int64)
    deltas[:, 1] = steps @ units
    deltas[:, 0] = -deltas[:, 1]
    return deltas
