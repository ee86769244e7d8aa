"""Hash tables of the permutohedral lattice: distinct simplices, then distinct vertices.

Open addressing with int32 slots holding ids; keys live in dense arrays indexed by id
(a simplex is named by its first point's rem0 and rank rows). Tables double when half
full, so they are sized by what is found (tens of thousands of vertices for a photo)
rather than by the worst case, and mostly stay in cache.
"""

import numpy as np
from numba import njit

SIMPLEX_CHUNK = 16384  # points deduplicated together in a cache-sized table


# Hashing never overflows: Numba emits signed arithmetic with "no signed wrap" flags,
# so LLVM may assume no overflow, and a wrapping multiply then hashes the same key to
# different slots depending on the inlining context.
@njit(cache=True, nogil=True)
def _mix(x):
    """A well-spread non-negative int64 from any int64 (products stay below 2**62)."""
    x = x ^ (x >> 31)
    h = (x & 0x7FFFFFFF) * 0x5BD1E995 + ((x >> 31) & 0x7FFFFFFF) * 0x27D4EB2F
    return h ^ (h >> 29)


@njit(cache=True, nogil=True)
def _hash_key(key):
    h = np.int64(0)
    for i in range(key.shape[0]):
        h = _mix(h + (np.int64(key[i]) & 0xFFFFFFFF))
    return h


@njit(cache=True, nogil=True)
def _simplex_hash(rem0, rank, p):
    h = np.int64(0)
    for i in range(rem0.shape[1]):
        h = _mix(h + (np.int64(rem0[p, i]) & 0xFFFFFFFF))
        h = _mix(h + rank[p, i])
    return h


@njit(cache=True, nogil=True)
def _same_simplex(rem0, rank, p, q):
    for i in range(rem0.shape[1]):
        if rem0[p, i] != rem0[q, i] or rank[p, i] != rank[q, i]:
            return False
    return True


@njit(cache=True, nogil=True)
def _rehash(slots, hashes, count):
    """Slots at twice the size, from the stored full hash of each id < count."""
    bigger = np.full(2 * slots.shape[0], -1, np.int32)
    mask = bigger.shape[0] - 1
    for s in range(count):
        h = hashes[s] & mask
        while bigger[h] >= 0:
            h = (h + 1) & mask
        bigger[h] = s
    return bigger


@njit(cache=True, nogil=True)
def _find_simplex(slots, hashes, firsts, count, rem0, rank, p, id_offset):
    """(id, new count) of point p's simplex; ids are firsts' indices - id_offset."""
    mask = slots.shape[0] - 1
    full = _simplex_hash(rem0, rank, p)
    h = full & mask
    while True:
        s = slots[h]
        if s < 0:
            slots[h] = count
            hashes[count] = full
            firsts[id_offset + count] = p
            return count, count + 1
        if _same_simplex(rem0, rank, firsts[id_offset + s], p):
            return s, count
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def dedupe_simplices(rem0, rank, local, firsts, counts, start, stop):
    """Find the distinct simplices of each chunk of SIMPLEX_CHUNK points, for the chunks
    [start, stop): neighbouring points mostly share one, so the serial global step
    sees only a fraction of the points.

    For chunk c over points [a, b): firsts[a:a + counts[c]] = the first point of each
    distinct simplex, and local[p] = the index in ``firsts`` of p's simplex.
    """
    n = rem0.shape[0]
    hashes = np.empty(SIMPLEX_CHUNK, np.int64)
    slots = np.empty(2 * SIMPLEX_CHUNK, np.int32)  # never more than half full
    for chunk in range(start, stop):
        a = chunk * SIMPLEX_CHUNK
        b = min(n, a + SIMPLEX_CHUNK)
        slots[:] = -1
        count = 0
        for p in range(a, b):
            if p > a and _same_simplex(rem0, rank, p, p - 1):
                local[p] = local[p - 1]  # the common case: no lookup
                continue
            s, count = _find_simplex(slots, hashes, firsts, count, rem0, rank, p, a)
            local[p] = a + s
        counts[chunk] = count


@njit(cache=True, nogil=True)
def _grow_vertices(slots, keys, count):
    """Twice the slots (rehashed from the keys) and room for twice the keys."""
    bigger = np.full(2 * slots.shape[0], -1, np.int32)
    mask = bigger.shape[0] - 1
    for v in range(count):
        h = _hash_key(keys[v]) & mask
        while bigger[h] >= 0:
            h = (h + 1) & mask
        bigger[h] = v
    more = np.empty((bigger.shape[0] // 2 + 1, keys.shape[1]), np.int32)
    more[:count] = keys[:count]
    return bigger, more


@njit(cache=True, nogil=True)
def _find_vertex(slots, keys, count, key):
    """(id, new count) of the vertex ``key``, added when absent (room is assumed)."""
    mask = slots.shape[0] - 1
    h = _hash_key(key) & mask
    d = key.shape[0]
    while True:
        v = slots[h]
        if v < 0:
            keys[count, :] = key
            slots[h] = count
            return count, count + 1
        same = True
        for i in range(d):
            if keys[v, i] != key[i]:
                same = False
                break
        if same:
            return v, count
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _add_corners(slots, keys, count, rem0, rank, p, key, out):
    """Add the d+1 corners of point p's simplex; out[r] = vertex id + 1."""
    dp1 = rem0.shape[1]
    d = dp1 - 1
    for r in range(dp1):
        for i in range(d):
            k = rank[p, i]
            key[i] = rem0[p, i] + (r if k <= d - r else r - dp1)
        v, count = _find_vertex(slots, keys, count, key)
        out[r] = v + 1
    return count


@njit(cache=True, nogil=True)
def insert_vertices(rem0, rank, firsts, counts):
    """Number the simplices and vertices (serial, in point order).

    Only the per-chunk distinct simplices (see dedupe_simplices) are looked up in the
    global simplex table; only new simplices add their d+1 corners.

    Returns:
        corner (P,) int32: per entry of ``firsts``, its simplex id;
        corners (S, d+1) int32: per simplex, its vertex ids + 1;
        keys (M, d) int32 and slots: the vertex table.
    """
    n, dp1 = rem0.shape
    key = np.empty(dp1 - 1, np.int32)
    simplex_slots = np.full(4096, -1, np.int32)
    hashes = np.empty(n, np.int64)
    first_point = np.empty(n, np.int32)
    vertex_slots = np.full(4096, -1, np.int32)
    keys = np.empty((2049, dp1 - 1), np.int32)
    corners = np.empty((n, dp1), np.int32)
    corner = np.empty(n, np.int32)
    n_simplices = 0
    n_vertices = 0
    for chunk in range(counts.shape[0]):
        start = chunk * SIMPLEX_CHUNK
        for pos in range(start, start + counts[chunk]):
            p = firsts[pos]
            if 2 * (n_simplices + 1) >= simplex_slots.shape[0]:
                simplex_slots = _rehash(simplex_slots, hashes, n_simplices)
            s, added = _find_simplex(simplex_slots, hashes, first_point, n_simplices,
                                     rem0, rank, p, 0)
            if added > n_simplices:
                n_simplices = added
                while 2 * (n_vertices + dp1) >= vertex_slots.shape[0]:
                    vertex_slots, keys = _grow_vertices(vertex_slots, keys, n_vertices)
                n_vertices = _add_corners(vertex_slots, keys, n_vertices, rem0, rank, p,
                                          key, corners[s])
            corner[pos] = s
    return corner, corners[:n_simplices].copy(), keys[:n_vertices].copy(), vertex_slots


@njit(cache=True, nogil=True)
def point_offsets(local, corner, corners, offsets, start, stop):
    """offsets[p] = the vertex ids + 1 of point p's simplex, for p in range."""
    for p in range(start, stop):
        offsets[p, :] = corners[corner[local[p]]]


@njit(cache=True, nogil=True)
def blur_neighbours(keys, slots, nbr, start, stop):
    """nbr (d+1, M, 2) int32 for vertices [start, stop): along each axis j, the ids + 1
    of key - 1 (key[j] + d) and key + 1 (key[j] - d), 0 when absent (read-only
    lookups: safe in parallel)."""
    d = keys.shape[1]
    key = np.empty(d, np.int32)
    mask = slots.shape[0] - 1
    for v in range(start, stop):
        for j in range(d + 1):
            for side in range(2):
                step = -1 if side == 0 else 1
                for i in range(d):
                    key[i] = keys[v, i] + (-step * d if i == j else step)
                h = _hash_key(key) & mask
                while True:
                    e = slots[h]
                    if e < 0:
                        break
                    same = True
                    for i in range(d):
                        if keys[e, i] != key[i]:
                            same = False
                            break
                    if same:
                        break
                    h = (h + 1) & mask
                nbr[j, v, side] = e + 1  # -1 (absent) -> 0


def key_packing(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(offset, shift) per coordinate that pack a vertex key and its blur neighbours
    (each coordinate moves by at most d) into one int64 without carries, or None when
    the coordinates span too many bits for that."""
    d = keys.shape[1]
    low = keys.min(axis=0).astype(np.int64) - d - 1
    span = keys.max(axis=0).astype(np.int64) + d + 1 - low + 1
    bits = np.ceil(np.log2(span + 1)).astype(np.int64)
    if bits.sum() > 62:
        return None
    shifts = np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.int64)
    return low, shifts


@njit(cache=True, nogil=True)
def pack_keys(keys, low, shifts, packed, start, stop):
    """packed[v] = the vertex key as one int64 (see key_packing), for v in range."""
    for v in range(start, stop):
        h = np.int64(0)
        for i in range(keys.shape[1]):
            h += (np.int64(keys[v, i]) - low[i]) << shifts[i]
        packed[v] = h


@njit(cache=True, nogil=True)
def merge_neighbours(ordered, order, shifts, nbr, start, stop):
    """Blur neighbours by merging: along axis j, key +- step is a constant shift of the
    packed key, so the shifted sorted keys are sorted too and one linear pass over the
    sorted keys finds every neighbour (no random hash probes). Tasks [start, stop)
    number (axis, side) pairs: task = 2 * axis + side."""
    d = shifts.shape[0]
    m = ordered.shape[0]
    for task in range(start, stop):
        axis, side = task // 2, task % 2
        step = -1 if side == 0 else 1
        delta = np.int64(0)
        for i in range(d):  # a multiply, not a shift of a negative number
            delta += np.int64(-step * d if i == axis else step) * (np.int64(1) << shifts[i])
        k = 0
        for i in range(m):
            target = ordered[i] + delta
            while k < m and ordered[k] < target:
                k += 1
            nbr[axis, order[i], side] = order[k] + 1 if k < m and ordered[k] == target else 0


def point_packing(rem0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """key_packing for the vertices of the points (before they exist): corners lie
    within d+1 of a point's rem0, their blur neighbours within d more."""
    d = rem0.shape[1] - 1
    margin = 2 * d + 2
    low = rem0[:, :d].min(axis=0).astype(np.int64) - margin
    span = rem0[:, :d].max(axis=0).astype(np.int64) + margin - low + 1
    bits = np.ceil(np.log2(span + 1)).astype(np.int64)
    if bits.sum() > 62:
        return None
    return low, np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.int64)


@njit(cache=True, nogil=True)
def _find_packed(table, key, count):
    """(id, new count) of the packed vertex key in table rows [key, id] (key -1:
    empty), added when absent: one probe reads one cache line."""
    mask = table.shape[0] - 1
    h = _mix(key) & mask
    while True:
        k = table[h, 0]
        if k == key:
            return np.int32(table[h, 1]), count
        if k < 0:
            table[h, 0] = key
            table[h, 1] = count
            return np.int32(count), count + 1
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def _grow_packed(table):
    bigger = np.full((2 * table.shape[0], 2), -1, np.int64)
    mask = bigger.shape[0] - 1
    for row in range(table.shape[0]):
        if table[row, 0] >= 0:
            h = _mix(table[row, 0]) & mask
            while bigger[h, 0] >= 0:
                h = (h + 1) & mask
            bigger[h] = table[row]
    return bigger


@njit(cache=True, nogil=True)
def insert_vertices_packed(rem0, rank, firsts, counts, low, shifts):
    """insert_vertices with each vertex key packed into an int64 (see point_packing).

    Returns:
        corner, corners as insert_vertices; packed (M,) int64 vertex keys.
    """
    n, dp1 = rem0.shape
    d = dp1 - 1
    simplex_slots = np.full(4096, -1, np.int32)
    hashes = np.empty(n, np.int64)
    first_point = np.empty(n, np.int32)
    table = np.full((4096, 2), -1, np.int64)
    corners = np.empty((n, dp1), np.int32)
    corner = np.empty(n, np.int32)
    n_simplices = 0
    n_vertices = 0
    for chunk in range(counts.shape[0]):
        start = chunk * SIMPLEX_CHUNK
        for pos in range(start, start + counts[chunk]):
            p = firsts[pos]
            if 2 * (n_simplices + 1) >= simplex_slots.shape[0]:
                simplex_slots = _rehash(simplex_slots, hashes, n_simplices)
            s, added = _find_simplex(simplex_slots, hashes, first_point, n_simplices,
                                     rem0, rank, p, 0)
            if added > n_simplices:
                n_simplices = added
                while 2 * (n_vertices + dp1) >= table.shape[0]:
                    table = _grow_packed(table)
                for r in range(dp1):
                    key = np.int64(0)
                    for i in range(d):
                        k = rank[p, i]
                        c = rem0[p, i] + (r if k <= d - r else r - dp1)
                        key += (np.int64(c) - low[i]) << shifts[i]
                    v, n_vertices = _find_packed(table, key, n_vertices)
                    corners[s, r] = v + 1
            corner[pos] = s
    packed = np.empty(n_vertices, np.int64)
    for row in range(table.shape[0]):
        if table[row, 0] >= 0:
            packed[table[row, 1]] = table[row, 0]
    return corner, corners[:n_simplices].copy(), packed
