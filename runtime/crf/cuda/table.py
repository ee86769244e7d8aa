"""The lattice's vertices on the device: a lock-free hash table of packed keys.

A vertex key is two int64 words (:func:`tseg.runtime.crf.hashing.key_layout`: each
coordinate a bit field, so a blur neighbour's key is the key plus a constant). The
table's slots hold entry ids (int32, -1 when empty) whose keys live in the entries'
key array: an entry claims an empty slot with an atomic compare-and-swap, or finds its
key there by linear probing. The slot then keeps the smallest entry id of its key
(an integer atomic min, whose result does not depend on the order), so vertices can be
numbered in first-touch order, as the CPU path numbers them, whatever the scheduling.
"""

import numpy as np
from numba import cuda

EMPTY = -1


@cuda.jit(device=True)
def _home(w0, w1, mask):
    """The first slot probed for key (w0, w1): the words folded to 31 bits, then a
    multiplicative hash (products below 2**62: no overflow, in numpy scalars either)."""
    f = w0 ^ (w1 << 21) ^ (w1 >> 43)
    g = (f ^ (f >> 31)) & 0x7FFFFFFF
    return ((g * 0x5BD1E995) >> 15) & mask


@cuda.jit(device=True)
def _find(table, keys, w0, w1):
    """The entry id held by the slot of key (w0, w1), or EMPTY."""
    mask = table.shape[0] - 1
    h = _home(w0, w1, mask)
    while True:
        cur = table[h]
        if cur == EMPTY or (keys[cur, 0] == w0 and keys[cur, 1] == w1):
            return cur
        h = (h + 1) & mask


@cuda.jit(cache=True)
def insert_entries(table, keys, slots):
    """Insert every entry's key; slots[e] = the slot that holds it.

    Args:
        table: (S,) int32, S a power of two >= 2 * entries, all EMPTY beforehand.
        keys: (E, 2) int64 packed keys of the entries.
        slots: (E,) int32 out.
    """
    mask = table.shape[0] - 1
    for e in range(cuda.grid(1), keys.shape[0], cuda.gridsize(1)):
        w0 = keys[e, 0]
        w1 = keys[e, 1]
        h = _home(w0, w1, mask)
        while True:
            cur = table[h]
            if cur == EMPTY:
                cur = cuda.atomic.cas(table, h, np.int32(EMPTY), np.int32(e))
                if cur == EMPTY:
                    break  # claimed
            # A slot's id only changes to a smaller id of the same key: safe to compare.
            if keys[cur, 0] == w0 and keys[cur, 1] == w1:
                cuda.atomic.min(table, h, np.int32(e))
                break
            h = (h + 1) & mask
        slots[e] = h


@cuda.jit(cache=True)
def mark_first(table, slots, first):
    """first[e] = 1 when entry e is its key's first (smallest) entry, else 0."""
    for e in range(cuda.grid(1), slots.shape[0], cuda.gridsize(1)):
        first[e] = 1 if table[slots[e]] == e else 0


@cuda.jit(cache=True)
def number_entries(table, slots, ids, rows, reps):
    """rows[e] = entry e's vertex id + 1 (row 0 stands for a missing neighbour), and
    reps[v] = the first entry of vertex v.

    Args:
        ids: (E + 1,) int32, the exclusive scan of mark_first's flags: a first entry's
            vertex id (first-touch order).
    """
    for e in range(cuda.grid(1), slots.shape[0], cuda.gridsize(1)):
        owner = table[slots[e]]
        rows[e] = ids[owner] + 1
        if owner == e:
            reps[ids[e]] = e


@cuda.jit(cache=True)
def find_neighbours(table, keys, rows, reps, deltas, nbr):
    """nbr[j, v, side] = the row (id + 1) of vertex v's neighbour along axis j, 0 when
    absent; ``deltas`` (d+1, 2, 2) int64 (hashing.neighbour_deltas) give the neighbours'
    key words as the key plus a constant."""
    for v in range(cuda.grid(1), reps.shape[0], cuda.gridsize(1)):
        e = reps[v]
        for j in range(deltas.shape[0]):
            for side in range(2):
                cur = _find(table, keys, keys[e, 0] + deltas[j, side, 0],
                            keys[e, 1] + deltas[j, side, 1])
                nbr[j, v, side] = 0 if cur == EMPTY else rows[cur]
