"""Explicit 8-lane float32 vector operations for the mean-field kernels, as Numba intrinsics.

Lattice values, unaries and marginals are stored as (rows, lanes) float32 C-contiguous
arrays with ``lanes`` a multiple of 8: a row is a pixel or a lattice vertex, a lane a
label. Each intrinsic here works on one 8-lane group ``[lane, lane + 8)`` of a row.

Why not plain loops: Numba turns SLP vectorisation off, so short fixed-length loops stay
scalar, and a loop over a runtime number of labels carries alias checks and negative-index
wrap-arounds per row. These intrinsics emit ``<8 x float>`` loads, FMAs and stores
directly (two SSE registers where AVX is missing, NEON on ARM), and keep the sums of a
slice in registers instead of in memory.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

LANES = 8
_F32 = ir.FloatType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_VEC = ir.VectorType(_F32, LANES)
_IVEC = ir.VectorType(_I32, LANES)
_FAST = ("fast",)


def _array(context, builder, arrty, value):
    return context.make_array(arrty)(context, builder, value)


def _group(builder, arr, row, lane):
    """Pointer to the 8-lane group [lane, lane + 8) of row ``row`` of a 2-D array."""
    lanes = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
    index = builder.add(builder.mul(row, lanes), lane)
    return builder.bitcast(builder.gep(arr.data, [index]), _VEC.as_pointer())


def _splat(builder, scalar):
    v = builder.insert_element(ir.Constant(_VEC, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(_VEC, ir.Undefined),
                                  ir.Constant(_IVEC, [0] * LANES))


def _load(builder, pointer):
    return builder.load(pointer, align=4)


def _store(builder, value, pointer):
    builder.store(value, pointer, align=4)


def _call(builder, name, args, result=_VEC, fastmath=()):
    """Call the LLVM intrinsic ``name`` on 8-lane vectors (``llvm.<name>.v8f32``)."""
    fnty = ir.FunctionType(result, [a.type for a in args])
    fn = cgutils.get_or_insert_function(builder.module, fnty, f"llvm.{name}.v8f32")
    return builder.call(fn, args, fastmath=fastmath)


def _fma(builder, a, b, c):
    """a * b + c, one rounding (llvmlite's IRBuilder.fma takes scalars only)."""
    return _call(builder, "fma", [a, b, c])


def _is_f32_matrix(*arrays) -> bool:
    return all(isinstance(a, types.Array) and a.dtype == types.float32 and a.ndim == 2
               and a.layout == "C" for a in arrays)


@intrinsic
def axpy(typingctx, dst, drow, src, srow, lane, weight):
    """dst[drow, lane:lane+8] += weight * src[srow, lane:lane+8]."""
    if not _is_f32_matrix(dst, src):
        return None

    def codegen(context, builder, sig, args):
        d, dr, s, sr, ln, w = args
        dp = _group(builder, _array(context, builder, sig.args[0], d), dr, ln)
        sp = _group(builder, _array(context, builder, sig.args[2], s), sr, ln)
        _store(builder, _fma(builder, _load(builder, sp), _splat(builder, w), _load(builder, dp)), dp)

    return types.void(dst, types.int64, src, types.int64, types.int64, types.float32), codegen


@intrinsic
def slice_add(typingctx, x, xrow, lane, values, offsets, weights, pixel):
    """x[xrow, lane:lane+8] += sum over r of weights[pixel, r] * values[offsets[pixel, r], lane:lane+8].

    ``offsets`` (N, d+1) int32 and ``weights`` (N, d+1) float32: a pixel's simplex
    corners and their weights. Two interleaved register accumulators halve the
    dependency chain of the sum.
    """
    if not (_is_f32_matrix(x, values, weights) and isinstance(offsets, types.Array)
            and offsets.dtype == types.int32 and offsets.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        xv, xr, ln, vals, offs, wts, p = args
        x_a = _array(context, builder, sig.args[0], xv)
        val_a = _array(context, builder, sig.args[3], vals)
        off_a = _array(context, builder, sig.args[4], offs)
        w_a = _array(context, builder, sig.args[5], wts)
        corners = cgutils.unpack_tuple(builder, off_a.shape, 2)[1]
        first = builder.mul(p, corners)
        zero = ir.Constant(_VEC, [0.0] * LANES)
        accs = [cgutils.alloca_once_value(builder, zero) for _ in range(2)]

        def add_corner(r, acc):
            index = builder.add(first, r)
            vertex = builder.sext(builder.load(builder.gep(off_a.data, [index])), _I64)
            w = builder.load(builder.gep(w_a.data, [index]))
            row = _load(builder, _group(builder, val_a, vertex, ln))
            builder.store(_fma(builder, row, _splat(builder, w), builder.load(acc)), acc)

        pairs = builder.sdiv(corners, ir.Constant(_I64, 2))
        with cgutils.for_range(builder, pairs) as loop:
            r = builder.mul(loop.index, ir.Constant(_I64, 2))
            add_corner(r, accs[0])
            add_corner(builder.add(r, ir.Constant(_I64, 1)), accs[1])
        odd = builder.icmp_signed("!=", builder.mul(pairs, ir.Constant(_I64, 2)), corners)
        with builder.if_then(odd):
            add_corner(builder.sub(corners, ir.Constant(_I64, 1)), accs[0])
        xp = _group(builder, x_a, xr, ln)
        total = builder.fadd(builder.load(accs[0]), builder.load(accs[1]), flags=_FAST)
        _store(builder, builder.fadd(_load(builder, xp), total, flags=_FAST), xp)

    sig = types.void(x, types.int64, types.int64, values, offsets, weights, types.int64)
    return sig, codegen


@intrinsic
def group_max(typingctx, x, row, lane):
    """max of x[row, lane:lane+8]."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        v = _load(builder, _group(builder, _array(context, builder, sig.args[0], args[0]),
                                  args[1], args[2]))
        return _call(builder, "vector.reduce.fmax", [v], result=_F32, fastmath=_FAST)

    return types.float32(x, types.int64, types.int64), codegen


def _exp(builder, x):
    """exp of 8 lanes (Cephes' float polynomial, relative error < 1e-7); 0 below -87,
    so that padded labels get exactly zero probability."""
    def const(value):
        return ir.Constant(_VEC, [value] * LANES)

    low = const(-87.0)
    clamped = _call(builder, "maxnum", [x, low])
    n = _call(builder, "floor", [builder.fadd(builder.fmul(clamped, const(1.44269504088896341)),
                                                   const(0.5))])
    r = builder.fsub(clamped, builder.fmul(n, const(0.693359375)))
    r = builder.fadd(r, builder.fmul(n, const(2.12194440e-4)))
    poly = const(1.9875691500e-4)
    for c in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        poly = _fma(builder, poly, r, const(c))
    y = builder.fadd(_fma(builder, builder.fmul(poly, r), r, r), const(1.0))
    exponent = builder.shl(builder.add(builder.fptosi(n, _IVEC), ir.Constant(_IVEC, [127] * LANES)),
                           ir.Constant(_IVEC, [23] * LANES))
    scaled = builder.fmul(y, builder.bitcast(exponent, _VEC))
    return builder.select(builder.fcmp_ordered(">", x, low), scaled, const(0.0))


@intrinsic
def exp_shifted(typingctx, x, row, lane, shift):
    """x[row, lane:lane+8] = exp(x[row, lane:lane+8] - shift); returns their sum."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        e = _exp(builder, builder.fsub(_load(builder, xp), _splat(builder, args[3])))
        _store(builder, e, xp)
        return _call(builder, "vector.reduce.fadd", [ir.Constant(_F32, 0.0), e], result=_F32,
                     fastmath=_FAST)

    return types.float32(x, types.int64, types.int64, types.float32), codegen


@intrinsic
def scale(typingctx, x, row, lane, factor):
    """x[row, lane:lane+8] *= factor."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        _store(builder, builder.fmul(_load(builder, xp), _splat(builder, args[3])), xp)

    return types.void(x, types.int64, types.int64, types.float32), codegen


@intrinsic
def blur_step(typingctx, dst, src, vertex, before, after, lane):
    """dst[vertex, g] = src[vertex, g] + (src[before, g] + src[after, g]) / 2, g the group."""
    if not _is_f32_matrix(dst, src):
        return None

    def codegen(context, builder, sig, args):
        d, s, v, a, b, ln = args
        src_a = _array(context, builder, sig.args[1], s)
        pair = builder.fadd(_load(builder, _group(builder, src_a, a, ln)),
                            _load(builder, _group(builder, src_a, b, ln)))
        out = _fma(builder, pair, _splat(builder, ir.Constant(_F32, 0.5)),
                          _load(builder, _group(builder, src_a, v, ln)))
        _store(builder, out, _group(builder, _array(context, builder, sig.args[0], d), v, ln))

    return types.void(dst, src, types.int64, types.int64, types.int64, types.int64), codegen


@intrinsic
def copy(typingctx, dst, drow, src, srow, lane):
    """dst[drow, lane:lane+8] = src[srow, lane:lane+8]."""
    if not _is_f32_matrix(dst, src):
        return None

    def codegen(context, builder, sig, args):
        d, dr, s, sr, ln = args
        sp = _group(builder, _array(context, builder, sig.args[2], s), sr, ln)
        _store(builder, _load(builder, sp), _group(builder, _array(context, builder, sig.args[0], d), dr, ln))

    return types.void(dst, types.int64, src, types.int64, types.int64), codegen


@intrinsic
def multiply(typingctx, dst, drow, a, arow, b, brow, lane):
    """dst[drow, g] = a[arow, g] * b[brow, g] for the group g = [lane, lane+8)."""
    if not _is_f32_matrix(dst, a, b):
        return None

    def codegen(context, builder, sig, args):
        d, dr, av, ar, bv, br, ln = args
        x = _load(builder, _group(builder, _array(context, builder, sig.args[2], av), ar, ln))
        y = _load(builder, _group(builder, _array(context, builder, sig.args[4], bv), br, ln))
        _store(builder, builder.fmul(x, y), _group(builder, _array(context, builder, sig.args[0], d), dr, ln))

    return types.void(dst, types.int64, a, types.int64, b, types.int64, types.int64), codegen


@intrinsic
def zero(typingctx, dst, row, lane):
    """dst[row, lane:lane+8] = 0."""
    if not _is_f32_matrix(dst):
        return None

    def codegen(context, builder, sig, args):
        dp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        _store(builder, ir.Constant(_VEC, [0.0] * LANES), dp)

    return types.void(dst, types.int64, types.int64), codegen
