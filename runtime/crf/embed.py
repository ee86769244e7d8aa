"""Points onto the permutohedral lattice: elevation, simplex ranks and barycentric weights.

A block of :data:`EMBED_BLOCK` points at a time, coordinate-major so the loops vectorise,
with Kraehenbuehl's float32 operations in his order (see :mod:`tseg.runtime.crf.lattice`).
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

EMBED_BLOCK = 128  # points embedded together, coordinate-major, so loops vectorise
# (128: half the per-block calls of 64, measured 5-10% faster hashing; 256 no better)
_GROUP = 16  # points transposed by one _coordinate_major


@intrinsic(prefer_literal=True)
def _coordinate_major(typingctx, f, p, out, q, d):
    """out[j, q + i] = f[p + i, j] for i < _GROUP and j < d, d a literal: one vector
    load and d shuffles, where element-wise copies of the strided columns (numba does
    not vectorise them) were most of the embedding's time."""
    if not isinstance(d, types.IntegerLiteral):
        return None
    width = d.literal_value
    f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)

    def codegen(context, builder, sig, args):
        src = context.make_array(sig.args[0])(context, builder, args[0])
        dst = context.make_array(sig.args[2])(context, builder, args[2])
        rows = builder.bitcast(builder.gep(src.data, [builder.mul(args[1], ir.Constant(i64, width))]),
                               ir.VectorType(f32, _GROUP * width).as_pointer())
        block = builder.load(rows, align=4)
        cols = cgutils.unpack_tuple(builder, dst.shape, 2)[1]
        for j in range(width):
            mask = ir.Constant(ir.VectorType(i32, _GROUP), [j + width * i for i in range(_GROUP)])
            column = builder.shuffle_vector(block, ir.Constant(block.type, ir.Undefined), mask)
            at = builder.add(builder.mul(ir.Constant(i64, j), cols), args[3])
            builder.store(column, builder.bitcast(builder.gep(dst.data, [at]), column.type.as_pointer()),
                          align=4)
        return context.get_dummy_value()

    return types.none(f, p, out, q, d), codegen


@intrinsic(prefer_literal=True)
def _point_major(typingctx, src, q, out, p, d):
    """out[p + i, j] = src[j, q + i] for i < _GROUP and j < d, d a literal (the inverse
    of _coordinate_major): d vector loads, shuffles and one vector store."""
    if not isinstance(d, types.IntegerLiteral):
        return None
    width = d.literal_value
    f32, i32, i64 = ir.FloatType(), ir.IntType(32), ir.IntType(64)

    def codegen(context, builder, sig, args):
        arr = context.make_array(sig.args[0])(context, builder, args[0])
        dst = context.make_array(sig.args[2])(context, builder, args[2])
        cols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
        group = ir.VectorType(f32, _GROUP)
        parts = []
        for j in range(width):
            at = builder.add(builder.mul(ir.Constant(i64, j), cols), args[1])
            parts.append(builder.load(builder.bitcast(builder.gep(arr.data, [at]), group.as_pointer()),
                                      align=4))
        while len(parts) > 1:  # concatenated: element j * _GROUP + i is src[j, q + i]
            if len(parts) % 2:
                parts.append(ir.Constant(parts[0].type, ir.Undefined))
            n = parts[0].type.count
            both = ir.Constant(ir.VectorType(i32, 2 * n), list(range(2 * n)))
            parts = [builder.shuffle_vector(parts[k], parts[k + 1], both)
                     for k in range(0, len(parts), 2)]
        mask = ir.Constant(ir.VectorType(i32, _GROUP * width),
                           [j * _GROUP + i for i in range(_GROUP) for j in range(width)])
        rows = builder.shuffle_vector(parts[0], ir.Constant(parts[0].type, ir.Undefined), mask)
        start = builder.gep(dst.data, [builder.mul(args[3], ir.Constant(i64, width))])
        builder.store(rows, builder.bitcast(start, rows.type.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(src, q, out, p, d), codegen


@njit(cache=True, nogil=True, error_model="numpy")
def embed_block(f, p0, scale, elev, rem0, rank, scratch):
    """Elevated and rounded points p0 .. p0 + EMBED_BLOCK (SoA, (d+1, B)): elev, rem0
    (before ``ranks``), and the sums of the rounded coordinates in scratch[d + 1]
    (scratch: (d+2, B)); ``rank`` holds the features meanwhile.

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
    for q in range(0, EMBED_BLOCK, _GROUP):  # the features, coordinate-major, in rank
        if d == 5:
            _coordinate_major(f, p0 + q, rank, q, 5)
        elif d == 2:
            _coordinate_major(f, p0 + q, rank, q, 2)
        else:
            for j in range(d):
                for b in range(q, q + _GROUP):
                    rank[j, b] = f[p0 + b, j]
    for j in range(d, 0, -1):
        s = scale[j - 1]
        fj = np.float32(j)
        for b in range(EMBED_BLOCK):
            cf = rank[j - 1, b] * s
            elev[j, b] = elev[0, b] - fj * cf
            elev[0, b] += cf
    for i in range(d + 1):
        for b in range(EMBED_BLOCK):
            v = np.rint(inv * elev[i, b])
            rem0[i, b] = v * dp1
            scratch[d + 1, b] += v


@njit(cache=True, nogil=True, error_model="numpy")
def ranks(elev, rem0, rank, scratch):
    """The ranks of the block's points (d+1, B) (after embed_block), their remainder-0
    points rem0 moved into the simplex; scratch[d + 1]: the sums of the rounded
    coordinates."""
    d = elev.shape[0] - 1
    dp1 = np.float32(d + 1)
    for i in range(d + 1):
        for b in range(EMBED_BLOCK):
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
        loses = np.float32(d - k + 1)  # a float32: gains + 1 would compare in float64
        for i in range(dp1):
            for q in range(EMBED_BLOCK):
                r = rank[i, q]
                b[k, q] += elev[i, q] if r == gains else zero
                b[k, q] -= elev[i, q] if r == loses else zero
    for q in range(EMBED_BLOCK):
        b[0, q] += np.float32(1.0) + b[d + 1, q]  # the reference's order
    for q in range(0, count, _GROUP):  # point-major into out
        if q + _GROUP <= count and dp1 == 6:
            _point_major(b, q, out, p0 + q, 6)
        elif q + _GROUP <= count and dp1 == 3:
            _point_major(b, q, out, p0 + q, 3)
        else:
            for k in range(q, min(q + _GROUP, count)):
                for i in range(dp1):
                    out[p0 + k, i] = b[i, k]


def scale_factors(d: int) -> np.ndarray:
    """(d,) float32 factors the features are multiplied by before the elevation."""
    # float32 exactly as the reference rounds them: inv_std_dev is a float there.
    inv_std_dev = float(np.float32(np.sqrt(2.0 / 3.0) * (d + 1)))
    return np.array([1.0 / np.sqrt((i + 2) * (i + 1)) * inv_std_dev for i in range(d)],
                    dtype=np.float32)


def elevated_bounds(fmin: np.ndarray, fmax: np.ndarray,
                    scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the first d elevated coordinates over all points (interval arithmetic
    on the features' bounds; the elevation is linear)."""
    d = fmin.shape[0]
    # Row j: elev[j] = sum_{i >= j} cf_i - j cf_{j-1}, cf_i = f_i scale_i.
    coef = np.triu(np.broadcast_to(scale.astype(np.float64), (d, d)))
    below = np.arange(1, d)
    coef[below, below - 1] = -below * scale[:-1].astype(np.float64)
    lower = np.where(coef > 0, coef * fmin, coef * fmax).sum(axis=1)
    upper = np.where(coef > 0, coef * fmax, coef * fmin).sum(axis=1)
    return lower, upper
