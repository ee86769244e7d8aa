"""Points onto the permutohedral lattice on the device: features, simplex, weights, keys.

One thread per point, with the CPU path's float32 operations in the reference's order
(:mod:`tseg.runtime.crf.embed`), so every point lands in the same simplex as there. On
a GPU, NVVM would fuse a product and a sum into one multiply-add (one rounding instead
of two) and move points across simplex boundaries: every product here is
``__fmul_rn``, which is never fused. The simulator multiplies numpy float32 scalars,
which round like it.

An entry is one corner of one point's simplex: entry ``e = p * (d+1) + r``.
"""

import numpy as np
from numba import cuda

from tseg.runtime.crf.cuda.device import simulated

MAX_DP1 = 6  # d + 1 for the bilateral kernel (d = 5), the largest tseg builds
_MAX_DP2 = 7  # (d+2,) barycentric scratch: a literal, as local arrays' sizes must be

if simulated():
    @cuda.jit(device=True)
    def mul_rn(a, b):
        """a * b rounded once (numpy float32 scalars)."""
        return a * b
else:  # pragma: no cover - needs a GPU
    from numba.cuda import libdevice

    @cuda.jit(device=True)
    def mul_rn(a, b):
        """a * b rounded once, never fused into a multiply-add."""
        return libdevice.fmul_rn(a, b)


@cuda.jit(device=True)
def _features(image, p, n, sxy, srgb, d, f):
    """f[:d] = pixel p's (x, y[, r, g, b]) / widths as the CPU path divides (float32);
    zeros for the reference's padding points (p >= n)."""
    for i in range(d):
        f[i] = np.float32(0.0)
    if p < n:
        width = image.shape[1]
        y = p // width
        x = p - y * width
        f[0] = np.float32(x) / sxy
        f[1] = np.float32(y) / sxy
        for c in range(d - 2):
            f[2 + c] = np.float32(image[y, x, c]) / srgb


@cuda.jit(device=True)
def _elevate(f, scale, d, elev, rem0, rank):
    """elev, rem0 (float32) and rank (int) of one point, as embed.embed_block."""
    dp1 = np.float32(d + 1)
    inv = np.float32(1.0) / dp1
    sm = np.float32(0.0)
    for j in range(d, 0, -1):
        cf = mul_rn(f[j - 1], scale[j - 1])
        elev[j] = sm - mul_rn(np.float32(j), cf)
        sm += cf
    elev[0] = sm
    total = 0
    for i in range(d + 1):
        v = round(mul_rn(inv, elev[i]))  # half to even, as the reference's SSE rounding
        rem0[i] = mul_rn(np.float32(v), dp1)
        total += v
        rank[i] = 0
    for i in range(d):
        for j in range(i + 1, d + 1):
            if elev[i] - rem0[i] < elev[j] - rem0[j]:
                rank[i] += 1
            else:
                rank[j] += 1
    for i in range(d + 1):
        r = rank[i] + total
        if r < 0:
            r += d + 1
            rem0[i] += dp1
        elif r >= d + 1:
            r -= d + 1
            rem0[i] -= dp1
        rank[i] = r


@cuda.jit(device=True)
def _barycentric(elev, rem0, rank, d, b, bary, e0):
    """bary[e0 + r] = the point's barycentric weights (b: (d+2,) scratch), scattered as
    the reference does; each b[k] is one difference rounded once, as the CPU's."""
    inv = np.float32(1.0) / np.float32(d + 1)
    for k in range(d + 2):
        b[k] = np.float32(0.0)
    for i in range(d + 1):
        v = mul_rn(elev[i] - rem0[i], inv)
        b[d - rank[i]] += v
        b[d - rank[i] + 1] -= v
    bary[e0] = b[0] + (np.float32(1.0) + b[d + 1])
    for r in range(1, d + 1):
        bary[e0 + r] = b[r]


@cuda.jit(device=True)
def _corner_keys(rem0, rank, d, low, units, keys, e0):
    """keys[e0 + r] = the two packed key words of simplex corner r (see
    hashing.key_layout): coordinate k is rem0[k] + r, less d + 1 where rank[k] > d - r."""
    for r in range(d + 1):
        w0 = np.int64(0)
        w1 = np.int64(0)
        for k in range(d):
            c = np.int64(rem0[k]) + (r if rank[k] <= d - r else r - (d + 1)) - low[k]
            w0 += c * units[k, 0]
            w1 += c * units[k, 1]
        keys[e0 + r, 0] = w0
        keys[e0 + r, 1] = w1


@cuda.jit(cache=True)
def embed_points(image, n, sxy, srgb, scale, low, units, bary, keys):
    """Every point's barycentric weights and simplex corners' keys.

    Args:
        image: (H, W, 3) uint8; n = H * W real points, padded to P by the reference's
            zero points (P = bary.shape[0] // (d+1)).
        sxy, srgb: float32 widths (srgb unread when d = 2).
        scale: (d,) float32 elevation factors (tseg.runtime.crf.embed.scale_factors).
        low, units: (d,) and (d, 2) int64 key layout (hashing.key_layout).
        bary: (P * (d+1),) float32 out; keys: (P * (d+1), 2) int64 out.
    """
    d = scale.shape[0]
    f = cuda.local.array(MAX_DP1, np.float32)
    elev = cuda.local.array(MAX_DP1, np.float32)
    rem0 = cuda.local.array(MAX_DP1, np.float32)
    rank = cuda.local.array(MAX_DP1, np.int64)
    b = cuda.local.array(_MAX_DP2, np.float32)
    for p in range(cuda.grid(1), bary.shape[0] // (d + 1), cuda.gridsize(1)):
        _features(image, p, n, sxy, srgb, d, f)
        _elevate(f, scale, d, elev, rem0, rank)
        _barycentric(elev, rem0, rank, d, b, bary, p * (d + 1))
        _corner_keys(rem0, rank, d, low, units, keys, p * (d + 1))
