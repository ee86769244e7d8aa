"""Direct-addressed vertex tables, for lattices whose keys fill a small box.

The Gaussian kernel's lattice (d = 2, on pixel positions) has keys in a box of a few
times as many integer points as pixels. There a vertex's key, as a mixed-radix index
into the box (see :func:`tseg.runtime.crf.hashing.key_layout`), is its table slot:
points mark their simplex corners in parallel without hashing, a prefix count numbers
the marked slots, and a neighbour is the slot plus a constant.

Vertex ids come out in index order rather than first-touch order; results do not
depend on the numbering (sums run in pixel order either way).
"""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def mark_corners(rank, skeys, count, units, corner, table, out, p0):
    """out[p0 + q, r] = box index of corner r of point q's simplex, table[index] = 1.

    Corner r is corner 0 (the simplex key) plus r on every coordinate, less d + 1 on
    each coordinate of rank above d - r (the closed form of hashing.block_corners):
    computed for the whole block in loops over its points, which vectorise.

    Args:
        rank: (d+1, B) float32 ranks of a block of embedded points; count of them used.
        skeys: (3, B) int64, their simplices' keys (hashing.simplex_keys).
        units: the key layout (units[:, 0] are the mixed-radix strides).
        corner: (B,) int64 scratch.
        table: the box, int32, zero where unmarked.
        out: (P, d+1) int32.
    """
    dp1 = rank.shape[0]
    d = dp1 - 1
    ones = np.int64(0)
    for i in range(d):
        ones += units[i, 0]
    for r in range(dp1):
        for q in range(count):
            corner[q] = skeys[0, q] + r * ones
        for i in range(d):
            step = dp1 * units[i, 0]
            above = np.float32(d - r)
            for q in range(count):
                if rank[i, q] > above:
                    corner[q] -= step
        for q in range(count):  # word 0 of a direct layout's key is the box index
            out[p0 + q, r] = corner[q]
            table[corner[q]] = 1


@njit(cache=True, nogil=True)
def number_vertices(table):
    """Number the marked slots in index order (serial): table[slot] = id, -1 where
    unmarked. Returns the slot of each vertex, (M,) int64."""
    m = 0
    for k in range(table.shape[0]):
        m += table[k] != 0
    vertices = np.empty(m, np.int64)
    m = 0
    for k in range(table.shape[0]):
        if table[k] != 0:
            table[k] = m
            vertices[m] = k
            m += 1
        else:
            table[k] = -1
    return vertices


@njit(cache=True, nogil=True)
def find_neighbours(vertices, table, deltas, nbr, start, stop):
    """nbr[j, v, side] = id + 1 of vertex v's neighbour along axis j (0 when absent);
    ``deltas[j, side, 0]`` is the neighbour's slot offset."""
    for v in range(start, stop):
        for j in range(deltas.shape[0]):
            for side in range(2):
                nbr[j, v, side] = table[vertices[v] + deltas[j, side, 0]] + 1
