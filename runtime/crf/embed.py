"""Points onto the permutohedral lattice: elevation, simplex ranks and barycentric weights.

A block of :data:`EMBED_BLOCK` points at a time, coordinate-major so the loops vectorise,
with Kraehenbuehl's float32 operations in his order (see :mod:`tseg.runtime.crf.lattice`).
"""

import numpy as np
from numba import njit

EMBED_BLOCK = 64  # points embedded together, coordinate-major, so loops vectorise


@njit(cache=True, nogil=True, error_model="numpy")
def embed_block(f, p0, scale, elev, rem0, rank, scratch):
    """Remainder-0 points and ranks of points p0 .. p0 + EMBED_BLOCK (SoA, (d+1, B));
    scratch: (d+2, B), its last row used.

    Mirrors the reference's SSE path operation by operation in float32 (its rounding
    is round-half-to-even), so every point lands in the same simplex. No fastmath:
    a fused multiply-add would move points across simplex boundaries.
    """
    d = f.shape[1]
    dp1 = np.float32(d + 1)
    inv = np.float32(1.0) / dp1
    for b in range(EMBED_BLOCK):
        elev[0, b] = 0  # the running sum ("sm" in the reference), ends as elev[0]
        scratch[d + 1, b] = 0  # the sum of the rounded coordinates
    for j in range(d, 0, -1):
        for b in range(EMBED_BLOCK):
            cf = f[p0 + b, j - 1] * scale[j - 1]
            elev[j, b] = elev[0, b] - np.float32(j) * cf
            elev[0, b] += cf
    for i in range(d + 1):
        for b in range(EMBED_BLOCK):
            v = np.rint(inv * elev[i, b])
            rem0[i, b] = v * dp1
            scratch[d + 1, b] += v
            rank[i, b] = 0
    for i in range(d):
        for j in range(i + 1, d + 1):
            for b in range(EMBED_BLOCK):
                below = elev[i, b] - rem0[i, b] < elev[j, b] - rem0[j, b]
                c = np.float32(1.0) if below else np.float32(0.0)
                rank[i, b] += c
                rank[j, b] += np.float32(1.0) - c
    for i in range(d + 1):
        for b in range(EMBED_BLOCK):
            r = rank[i, b] + scratch[d + 1, b]
            shift = dp1 if r < 0 else (-dp1 if r >= dp1 else np.float32(0.0))
            rank[i, b] = r + shift
            rem0[i, b] += shift


@njit(cache=True, nogil=True, error_model="numpy")
def barycentric(elev, rem0, rank, count, b, out, p0):
    """out[p0 + q] = the barycentric weights of points q < count of an embedded block
    (b: (d+2, EMBED_BLOCK) scratch; ``elev`` is overwritten), as the reference computes
    them: v_i = (elev_i - rem0_i) / (d+1), b[d - rank_i] += v_i, b[d - rank_i + 1] -= v_i.

    The ranks are a permutation, so b[k] gets one v at most from each side and is
    v_a - v_b rounded once in either order: computed here in closed form with loops over
    the block's points (selects, which vectorise) rather than by scattering.
    """
    dp1 = elev.shape[0]
    d = dp1 - 1
    inv = np.float32(1.0) / np.float32(dp1)
    zero = np.float32(0.0)
    for i in range(dp1):
        for q in range(EMBED_BLOCK):
            elev[i, q] = (elev[i, q] - rem0[i, q]) * inv
    for k in range(d + 2):
        for q in range(EMBED_BLOCK):
            b[k, q] = 0
        gains = np.float32(d - k)  # the rank whose v adds to b[k]
        for i in range(dp1):
            for q in range(EMBED_BLOCK):
                r = rank[i, q]
                b[k, q] += elev[i, q] if r == gains else zero
                b[k, q] -= elev[i, q] if r == gains + 1 else zero
    for q in range(count):
        out[p0 + q, 0] = b[0, q] + (np.float32(1.0) + b[d + 1, q])  # the reference's order
        for i in range(1, dp1):
            out[p0 + q, i] = b[i, q]
