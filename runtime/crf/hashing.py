"""Vertex tables of the permutohedral lattice: packed keys, per-chunk hashing, merging.

A vertex key is d integer coordinates (the (d+1)-th follows from their zero sum).
Each coordinate is offset to be non-negative and packed into a bit field of one of
two int64 words, sized from the range the points can reach, so a key is compared and
hashed as two integers and a blur neighbour's key is the key plus a constant.

Points are hashed in chunks in parallel, each into its own table, numbering vertices
in first-touch order; a short serial merge then numbers the chunks' vertices
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
_EMPTY = np.int64(-1)


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
def _prefetch(typingctx, table, row):
    """Ask the CPU to bring row ``row`` of a 2-D table into cache (no effect on results):
    lookups of tables bigger than the caches then overlap their memory latency."""
    if not (isinstance(table, types.Array) and table.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        cols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
        ptr = builder.gep(arr.data, [builder.mul(args[1], cols)])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3),
                          ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.none(table, types.int64), codegen


@njit(cache=True, nogil=True)
def _home(keys, w0, w1, w2):
    """The first slot probed for key (w0, w1, w2) (see _slot)."""
    x = ((np.uint64(w0) * np.uint64(0x9E3779B97F4A7C15))
         ^ (np.uint64(w1) * np.uint64(0xC2B2AE3D27D4EB4F))
         ^ (np.uint64(w2) * np.uint64(0x165667B19E3779F9)))
    return np.int64(x >> np.uint64(32)) & (keys.shape[0] - 1)


@njit(cache=True, nogil=True)
def _slot(keys, w0, w1, w2):
    """The slot of key (w0, w1, w2) in an open-addressing table (multiplicative hashing
    on wrapping unsigned products), or of the empty slot where it would go.

    A table is one (slots, 4) int64 array, rows [w0, w1, w2, id]: a probe reads one
    half cache line."""
    mask = keys.shape[0] - 1
    h = _home(keys, w0, w1, w2)
    while keys[h, 0] != w0 or keys[h, 1] != w1 or keys[h, 2] != w2:
        if keys[h, 0] == _EMPTY:
            return h
        h = (h + 1) & mask
    return h


@njit(cache=True, nogil=True)
def new_table(size):
    """An empty table of ``size`` (a power of two) slots."""
    return np.full((size, 4), _EMPTY, np.int64)


@njit(cache=True, nogil=True)
def _grow(table):
    """Twice the slots, rehashed."""
    bigger = new_table(2 * table.shape[0])
    for s in range(table.shape[0]):
        if table[s, 0] != _EMPTY:
            t = _slot(bigger, table[s, 0], table[s, 1], table[s, 2])
            for i in range(4):
                bigger[t, i] = table[s, i]
    return bigger


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def same_simplex(skeys, q, previous):
    """Whether points q and previous of a block (see simplex_keys) share their simplex."""
    return (skeys[0, q] == skeys[0, previous] and skeys[1, q] == skeys[1, previous]
            and skeys[2, q] == skeys[2, previous])


@njit(cache=True, nogil=True)
def corner_keys(rem0, rank, q, low, units, by_rank, corners):
    """corners[r] = the two key words of corner r of point q's simplex.

    Corner 0 is rem0; corner r + 1 adds 1 to every coordinate and subtracts d + 1 from
    the one of rank d - r (the reference's "rem0 + r, or r - (d+1) where the rank is
    above d - r").

    Args:
        rem0, rank: (d+1, B) float32 of a block of embedded points.
        low, units: the key layout (see key_layout).
        by_rank: (d+1,) int64 scratch.
        corners: (d+1, 2) int64 output.
    """
    dp1 = rem0.shape[0]
    w0 = np.int64(0)
    w1 = np.int64(0)
    ones0 = np.int64(0)
    ones1 = np.int64(0)
    for i in range(dp1):  # the unstored last coordinate unless overwritten
        by_rank[i] = dp1 - 1
    for i in range(dp1 - 1):
        c = np.int64(rem0[i, q]) - low[i]
        w0 += c * units[i, 0]
        w1 += c * units[i, 1]
        ones0 += units[i, 0]
        ones1 += units[i, 1]
        by_rank[np.int64(rank[i, q])] = i
    for r in range(dp1):
        if r > 0:
            i = by_rank[dp1 - r]
            w0 += ones0
            w1 += ones1
            if i < dp1 - 1:
                w0 -= dp1 * units[i, 0]
                w1 -= dp1 * units[i, 1]
        corners[r, 0] = w0
        corners[r, 1] = w1


@njit(cache=True, nogil=True)
def _add_corners(corners, keys, found, n, simplices, sid):
    """simplices[sid, r] = local id of the vertex with key corners[r], adding new
    vertices to the table; returns the new vertex count."""
    for r in range(corners.shape[0]):
        w0 = corners[r, 0]
        w1 = corners[r, 1]
        s = _slot(keys, w0, w1, 0)
        if keys[s, 0] == _EMPTY:
            keys[s, 0] = w0
            keys[s, 1] = w1
            keys[s, 2] = 0
            keys[s, 3] = n
            found[n, 0] = w0
            found[n, 1] = w1
            n += 1
        simplices[sid, r] = keys[s, 3]
    return n


@njit(cache=True, nogil=True)
def hash_points(rem0, rank, skeys, count, low, units, tables, found, sizes, simplices, out, p0):
    """Add the simplex corners of ``count`` embedded points to one chunk's tables.

    Points of a simplex seen before in the chunk copy its corners: one lookup instead
    of d + 1 (the previous point's simplex is checked first, without any).

    Args:
        rem0, rank: (d+1, B) float32 of a block of embedded points.
        skeys: (3, B) int64, their simplices' keys (simplex_keys).
        count: points of the block to hash.
        low: (d,) the key layout's offsets; units: (d, 2) int64, the value of one
            step of each coordinate in the two key words (see key_layout).
        tables: (vertex table, simplex table) of the chunk.
        found: (cap, 2) int64: the chunk's vertex keys by local id.
        sizes: (2,) int64: vertices and simplices so far (updated).
        simplices: (cap, d+1) int32: the corners of each simplex by simplex id.
        out: (P, d+1) int32: gets the local id of each corner of point p0 + q.

    Returns:
        The tables, grown when half full.
    """
    keys, stable = tables
    dp1 = rem0.shape[0]
    by_rank = np.empty(dp1, np.int64)
    corners = np.empty((dp1, 2), np.int64)
    for q in range(count):
        p = p0 + q
        if q > 0 and same_simplex(skeys, q, q - 1):
            for r in range(dp1):  # no lookup
                out[p, r] = out[p - 1, r]
            continue
        w0 = skeys[0, q]  # corner 0's key: rem0
        w1 = skeys[1, q]
        code = skeys[2, q]  # the ranks: with rem0 they name the simplex
        s = _slot(stable, w0, w1, code)
        if stable[s, 0] != _EMPTY:
            for r in range(dp1):
                out[p, r] = simplices[stable[s, 3], r]
            continue
        ns = sizes[1]
        sizes[1] = ns + 1
        if 2 * (ns + 1) >= stable.shape[0]:
            stable = _grow(stable)
            s = _slot(stable, w0, w1, code)
        stable[s, 0] = w0
        stable[s, 1] = w1
        stable[s, 2] = code
        stable[s, 3] = ns
        if 2 * (sizes[0] + dp1) >= keys.shape[0]:
            keys = _grow(keys)
        corner_keys(rem0, rank, q, low, units, by_rank, corners)
        sizes[0] = _add_corners(corners, keys, found, sizes[0], simplices, ns)
        for r in range(dp1):
            out[p, r] = simplices[ns, r]
    return keys, stable


@njit(cache=True, nogil=True)
def merge_chunks(found, counts, starts, dp1, remap):
    """Number every chunk's vertices globally, in chunk order (serial).

    Args:
        found: (P * (d+1), 2) int64: chunk c's keys from row starts[c] * dp1.
        counts: (chunks,) vertices per chunk.
        starts: (chunks + 1,) first point of each chunk.

    Returns:
        table: the global table; vertices (M, 2) int64 keys by global id. ``remap``
        gets, per row of ``found`` in use, the global id.
    """
    total = counts.sum()
    size = 1024  # chunks share many vertices: sized for half of their sum, grown if need be
    while size < total:  # (twice that never grows, 5 ms faster on 268k vertices, 2 MB more)
        size *= 2
    keys = new_table(size)
    vertices = np.empty((total, 2), np.int64)
    m = 0
    for c in range(counts.shape[0]):
        base = starts[c] * dp1
        for i in range(base, base + counts[c]):
            if i + _AHEAD < base + counts[c]:
                _prefetch(keys, _home(keys, found[i + _AHEAD, 0], found[i + _AHEAD, 1], 0))
            if 2 * (m + 1) >= keys.shape[0]:
                keys = _grow(keys)
            s = _slot(keys, found[i, 0], found[i, 1], 0)
            if keys[s, 0] == _EMPTY:
                keys[s, 0] = found[i, 0]
                keys[s, 1] = found[i, 1]
                keys[s, 2] = 0
                keys[s, 3] = m
                vertices[m, 0] = found[i, 0]
                vertices[m, 1] = found[i, 1]
                m += 1
            remap[i] = keys[s, 3]
    return keys, vertices[:m].copy()


@njit(cache=True, nogil=True)
def find_neighbours(vertices, keys, deltas, nbr, start, stop):
    """nbr[j, v, side] = id + 1 of vertex v's neighbour along axis j (0 when absent).

    ``deltas`` (d+1, 2, 2): what the two key words gain for each axis and side; side 0
    is side 1 negated, so one lookup finds both ends of an edge: vertex v looks up its
    side-1 neighbour n and, when n exists, writes nbr[j, n, 0] = v + 1 as well (v is the
    only vertex whose side-1 neighbour is n). ``nbr`` must be zero beforehand. Lookups
    only read the table, and every entry has one writer: safe in parallel.
    """
    for v in range(start, stop):
        if v + _AHEAD < stop:  # the table is bigger than the caches for big lattices
            for j in range(deltas.shape[0]):
                _prefetch(keys, _home(keys, vertices[v + _AHEAD, 0] + deltas[j, 1, 0],
                                      vertices[v + _AHEAD, 1] + deltas[j, 1, 1], 0))
        for j in range(deltas.shape[0]):
            w0 = vertices[v, 0] + deltas[j, 1, 0]
            w1 = vertices[v, 1] + deltas[j, 1, 1]
            s = _slot(keys, w0, w1, 0)
            if keys[s, 0] != _EMPTY:
                n = keys[s, 3]
                nbr[j, v, 1] = n + 1
                nbr[j, n, 0] = v + 1


def neighbour_deltas(units: np.ndarray) -> np.ndarray:
    """(d+1, 2, 2) int64: per axis j and side, the change of the two key words.

    As the reference: side 0 is key - 1 with coordinate j + d, side 1 is key + 1
    with coordinate j - d (for j = d, every stored coordinate moves by -1 / +1).
    """
    d = units.shape[0]
    deltas = np.zeros((d + 1, 2, 2), np.int64)
    for j in range(d + 1):
        for side, step in ((0, -1), (1, 1)):
            for i in range(d):
                deltas[j, side] += (-step * d if i == j else step) * units[i]
    return deltas
