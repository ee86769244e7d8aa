"""A chunk's simplex table: its points' simplices, and their corners' local vertex ids.

Each chunk of points (see :func:`tseg.runtime.crf.lattice.hash_chunks`) numbers its
vertices in first-touch order. A block of points finds its simplices in the simplex
table, a row per simplex holding its key (corner 0's key and the ranks) and its
corners' local ids, so a point whose simplex the chunk has seen reads one row; the
block's new simplices then get their corners in closed form, looked up in the chunk's
vertex table (:mod:`tseg.runtime.crf.hashing`) together. Every kernel called per
block takes whole arrays and has no calls or raise paths (``error_model="numpy"``),
so that Numba drops the reference counting of its arguments.
"""

import numpy as np
from numba import njit

from tseg.runtime.crf import hashing

_EMPTY = np.int64(-1)


@njit(cache=True, nogil=True)
def simplex_table(size, dp1):
    """An empty simplex table of ``size`` (a power of two) slots for d + 1 = ``dp1``.

    Row: the key (w0, w1, code; w0 = -1 where empty), then the local ids of the d + 1
    corners as int32 (columns 6 .. 6 + d of the table's int32 view, see _IDS): a point
    that finds its simplex reads one row."""
    return np.full((size, 3 + (dp1 + 1) // 2), _EMPTY, np.int64)


_IDS = 6  # the int32 column of a simplex row's first corner id


@njit(cache=True, nogil=True)
def _simplex_slot(table, h, w0, w1, code):
    """The slot of simplex key (w0, w1, code), probing from slot h, or of the empty slot
    where it would go. One branch a probe: whether it ends is hard to predict."""
    mask = table.shape[0] - 1
    while True:
        t0 = table[h, 0]
        differs = (t0 ^ w0) | (table[h, 1] ^ w1) | (table[h, 2] ^ code)
        if (differs == 0) | (t0 == _EMPTY):
            return h
        h = (h + 1) & mask


@njit(cache=True, nogil=True)
def grow_simplices(table, slots, n):
    """Twice the slots, with the n rows at ``slots`` rehashed; ``slots`` updated."""
    bigger = np.full((2 * table.shape[0], table.shape[1]), _EMPTY, np.int64)
    for k in range(n):
        s = slots[k]
        home = hashing.first_slot(bigger, hashing.key_hash(table[s, 0], table[s, 1], table[s, 2]))
        t = _simplex_slot(bigger, home, table[s, 0], table[s, 1], table[s, 2])
        bigger[t] = table[s]
        slots[k] = t
    return bigger


@njit(cache=True, nogil=True, error_model="numpy")
def find_simplices(skeys, count, table, sizes, sslots, block):
    """Find the simplices of a block's points in a chunk's simplex table, adding the
    new ones' keys: block[0, q] = point q's slot, block[1, :new] = the points whose
    simplex is new to the chunk, in order; returns new.

    Args:
        skeys: (3, B) int64, the simplices' keys (simplex_keys); count of them used.
        table: the chunk's simplex table, with room for count more rows at most half
            full (see grow_simplices).
        sizes: (2,) int64: vertices and simplices so far (sizes[1] updated).
        sslots: int32, the slot of each simplex (for clear).
        block: (2, B) int64.
    """
    for q in range(count):  # the block's rows are fetched together
        hx = hashing.key_hash(skeys[0, q], skeys[1, q], skeys[2, q])
        block[0, q] = hashing.first_slot(table, hx)
        hashing.prefetch(table, block[0, q])
    new = 0
    n = sizes[1]  # in a register: the stores below could alias sizes
    for q in range(count):  # no branch on whether the simplex is new: it is unpredictable
        s = _simplex_slot(table, block[0, q], skeys[0, q], skeys[1, q], skeys[2, q])
        block[0, q] = s
        is_new = table[s, 0] == _EMPTY
        for k in range(3):  # the key, new or rewritten
            table[s, k] = skeys[k, q]
        sslots[n] = s  # kept only if new
        n += is_new
        block[1, new] = q
        new += is_new
    sizes[1] = n
    return new


@njit(cache=True, nogil=True, error_model="numpy")
def add_corners(corners, hashes, block, new, vertices, found, sizes, vslots, ids):
    """Give the block's new simplices (see find_simplices) the local ids of their
    corners (see block_corners), adding new vertices to the chunk's vertex table.

    Args:
        vertices: the chunk's vertex table, with room for (d+1) * new more vertices at
            most half full (see hashing.grow_vertices).
        found: (cap, 2) int64: the chunk's vertex keys by local id.
        sizes: (2,) int64: vertices and simplices so far (sizes[0] updated).
        vslots: int32, the slot of each vertex (for clear).
        ids: the simplex table's int32 view: row s gets the corners' ids from _IDS.
    """
    n = sizes[0]
    dp1 = corners.shape[0]
    for k in range(new):
        q = block[1, k]
        s = block[0, q]
        if k + 2 < new:  # the corners' slots of a simplex two ahead
            for r in range(dp1):
                hashing.prefetch(vertices, hashing.first_slot(vertices, hashes[r, block[1, k + 2]]))
        for r in range(dp1):
            w0 = corners[r, 0, q]
            w1 = corners[r, 1, q]
            h = hashing.vertex_slot(vertices, found, hashes[r, q], w0, w1)
            if vertices[h] < 0:
                vertices[h] = hashing.vertex_entry(hashes[r, q], n)
                found[n, 0] = w0
                found[n, 1] = w1
                vslots[n] = h
                n += 1
            ids[s, _IDS + r] = hashing.vertex_id(vertices[h])
    sizes[0] = n


@njit(cache=True, nogil=True, error_model="numpy")
def write_corners(ids, block, count, out, p0):
    """out[p0 + q] = the corners' local ids of point q's simplex (slot block[0, q];
    ``ids``: the simplex table's int32 view)."""
    for q in range(count):
        s = block[0, q]  # once: the stores could alias it
        for r in range(out.shape[1]):
            out[p0 + q, r] = ids[s, _IDS + r]


@njit(cache=True, nogil=True)
def clear(table, vertices, sizes, sslots, vslots):
    """Empty a chunk's tables for the next chunk (only the slots in use)."""
    for k in range(sizes[1]):
        table[sslots[k], 0] = _EMPTY
    for k in range(sizes[0]):
        vertices[vslots[k]] = -1
    sizes[:] = 0
