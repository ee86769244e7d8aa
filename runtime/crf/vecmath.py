"""Vector intrinsics of the unaries and of the pixel passes' ends, on the groups of
:mod:`tseg.runtime.crf.simd` (whose conventions they follow): bilinear steps, a
log-softmax and pydensecrf's clipped log (:mod:`tseg.runtime.crf.unary`); a pixel's
classes from label-first arrays (a gather, or 8 pixels' by transposes in registers) and
Q back to them; the argmax of a pixel's Q.

Developers: as for simd.py, Numba's on-disk cache of a kernel is keyed on the kernel's
own source file: after editing this module only, delete ``runtime/crf/__pycache__/*.nb[ic]``.
"""

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from tseg.runtime.crf.simd import (
    _F32,
    _FAST,
    _I32,
    _IVEC,
    _VEC,
    LANES,
    _array,
    _call,
    _fma,
    _group,
    _is_f32_matrix,
    _load,
    _splat,
    _store,
)


@intrinsic
def lerp(typingctx, dst, drow, a, arow, b, brow, keep, weight, lane):
    """dst[drow, g] = a[arow, g] * keep + b[brow, g] * weight, g the group: bilinear's
    step as :func:`tseg.runtime.scores._lerp` takes it (keep = 1 - weight in float32),
    two roundings of the products and one of the sum, no fused multiply-add, so the
    values equal NumPy's bit for bit."""
    if not _is_f32_matrix(dst, a, b):
        return None

    def codegen(context, builder, sig, args):
        d, dr, av, ar, bv, br, kp, w, ln = args
        x = _load(builder, _group(builder, _array(context, builder, sig.args[2], av), ar, ln))
        y = _load(builder, _group(builder, _array(context, builder, sig.args[4], bv), br, ln))
        out = builder.fadd(builder.fmul(x, _splat(builder, kp)), builder.fmul(y, _splat(builder, w)))
        _store(builder, out, _group(builder, _array(context, builder, sig.args[0], d), dr, ln))

    return (types.void(dst, types.int64, a, types.int64, b, types.int64, types.float32,
                       types.float32, types.int64), codegen)


def _log(builder, x):
    """log of a group of positive normal floats (Cephes' logf polynomial, relative error
    about 1e-7, as NumPy's float32 log)."""
    def const(value):
        return ir.Constant(_VEC, [value] * LANES)

    def iconst(value):
        return ir.Constant(_IVEC, [value] * LANES)

    bits = builder.bitcast(x, _IVEC)
    exponent = builder.sub(builder.lshr(bits, iconst(23)), iconst(126))
    m = builder.bitcast(builder.or_(builder.and_(bits, iconst(0x807FFFFF)), iconst(0x3F000000)),
                        _VEC)  # x = m 2^exponent, m in [0.5, 1)
    small = builder.fcmp_ordered("<", m, const(0.707106781186547524))
    e = builder.sitofp(builder.sub(exponent, builder.zext(small, _IVEC)), _VEC)
    m = builder.fsub(builder.select(small, builder.fadd(m, m), m), const(1.0))
    z = builder.fmul(m, m)
    poly = const(7.0376836292e-2)
    for c in (-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
              -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1):
        poly = _fma(builder, poly, m, const(c))
    y = builder.fmul(builder.fmul(poly, m), z)
    y = _fma(builder, e, const(-2.12194440e-4), y)
    y = _fma(builder, z, const(-0.5), y)
    return _fma(builder, e, const(0.693359375), builder.fadd(m, y))


@intrinsic
def log_softmax_clip(typingctx, x, row, lane, top, log_total, floor, limit):
    """x[row, g] = max((x[row, g] - top) - log_total, floor) in the lanes below
    ``limit``, -3.4e38 in the others (g the group): a log-softmax (top the row's max,
    log_total the log of its sum of exp(x - top)) clipped below, padded lanes left
    impossible."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        v = builder.fsub(builder.fsub(_load(builder, xp), _splat(builder, args[3])),
                         _splat(builder, args[4]))
        v = _call(builder, "maxnum", [v, _splat(builder, args[5])])
        _store(builder, builder.select(_inside(builder, args[2], args[6]), v,
                                       ir.Constant(_VEC, [-3.4028235e38] * LANES)), xp)

    return (types.void(x, types.int64, types.int64, types.float32, types.float32, types.float32,
                       types.int64), codegen)


@intrinsic
def log(typingctx, x, row, lane):
    """x[row, g] = log(x[row, g]) (g the group), positive normal floats: a group of
    pixels' logs in one vector."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        _store(builder, _log(builder, _load(builder, xp)), xp)

    return types.void(x, types.int64, types.int64), codegen


def _splat_int(builder, scalar):
    v = builder.insert_element(ir.Constant(_IVEC, ir.Undefined), scalar, ir.Constant(_I32, 0))
    return builder.shuffle_vector(v, ir.Constant(_IVEC, ir.Undefined),
                                  ir.Constant(_IVEC, [0] * LANES))


@intrinsic
def log_clip(typingctx, x, row, lane, low, limit):
    """x[row, g] = log(min(max(x[row, g], low), 1)) in the lanes below ``limit``, -3.4e38
    in the others (g the group): pydensecrf's -unary of probabilities, low > 0 normal.
    Returns whether every lane below ``limit`` held a probability, a value in [0, 1]
    (NaN is not): the first pixel pass checks its input as it reads it."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        p = _load(builder, xp)
        one = ir.Constant(_VEC, [1.0] * LANES)
        clipped = _call(builder, "minnum", [_call(builder, "maxnum", [p, _splat(builder, args[3])]),
                                            one])
        inside = _inside(builder, args[2], args[4])
        out = builder.select(inside, _log(builder, clipped),
                             ir.Constant(_VEC, [-3.4028235e38] * LANES))
        _store(builder, out, xp)
        valid = builder.and_(builder.fcmp_ordered(">=", p, ir.Constant(_VEC, [0.0] * LANES)),
                             builder.fcmp_ordered("<=", p, one))
        lanes_ok = builder.bitcast(builder.or_(valid, builder.not_(inside)), ir.IntType(LANES))
        return builder.icmp_unsigned("==", lanes_ok, ir.Constant(ir.IntType(LANES), 2**LANES - 1))

    return types.boolean(x, types.int64, types.int64, types.float32, types.int64), codegen


def _gather_column(builder, arr, col, lane, limit, fill):
    """The group [lane, lane + LANES) of column ``col`` of a (rows, cols) float32 array
    (one masked gather); rows at or past ``limit`` read as ``fill``."""
    i64 = ir.IntType(64)
    vec64 = ir.VectorType(i64, LANES)
    cols = cgutils.unpack_tuple(builder, arr.shape, 2)[1]
    start = builder.add(builder.ptrtoint(arr.data, i64),
                        builder.mul(builder.add(builder.mul(lane, cols), col), ir.Constant(i64, 4)))
    stride = builder.mul(cols, ir.Constant(i64, 4))

    def splat64(x):
        v = builder.insert_element(ir.Constant(vec64, ir.Undefined), x, ir.Constant(_I32, 0))
        return builder.shuffle_vector(v, ir.Constant(vec64, ir.Undefined),
                                      ir.Constant(_IVEC, [0] * LANES))

    offsets = builder.mul(ir.Constant(vec64, list(range(LANES))), splat64(stride))
    pointers = builder.inttoptr(builder.add(splat64(start), offsets),
                                ir.VectorType(_F32.as_pointer(), LANES))
    rows = builder.add(ir.Constant(vec64, list(range(LANES))), splat64(lane))
    mask = builder.icmp_signed("<", rows, splat64(limit))
    fnty = ir.FunctionType(_VEC, [pointers.type, _I32, mask.type, _VEC])
    fn = cgutils.get_or_insert_function(builder.module, fnty,
                                        f"llvm.masked.gather.v{LANES}f32.v{LANES}p0")
    return builder.call(fn, [pointers, ir.Constant(_I32, 4), mask, _splat(builder, fill)])


def _inside(builder, lane, limit):
    """The lanes of the group [lane, lane + LANES) below ``limit`` (a vector of i1)."""
    index = builder.add(ir.Constant(_IVEC, list(range(LANES))),
                        _splat_int(builder, builder.trunc(lane, _I32)))
    return builder.icmp_signed("<", index, _splat_int(builder, builder.trunc(limit, _I32)))


@intrinsic
def negate(typingctx, x, row, lane, limit):
    """x[row, g] = -x[row, g] in the lanes below ``limit``, -3.4e38 in the others (g the
    group): a pixel's -unary from its energies, padded lanes left impossible."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        out = builder.fsub(ir.Constant(_VEC, [-0.0] * LANES), _load(builder, xp))  # exact
        _store(builder, builder.select(_inside(builder, args[2], args[3]), out,
                                       ir.Constant(_VEC, [-3.4028235e38] * LANES)), xp)

    return types.void(x, types.int64, types.int64, types.int64), codegen


@intrinsic
def column(typingctx, dst, drow, src, col, lane, limit):
    """dst[drow, g] = src[g, col] for the rows g of the group [lane, lane + LANES) below
    ``limit`` (1 in the others): a pixel's classes from label-first src (C, N), in one
    masked gather (scalar stores would stall the next load of the row)."""
    if not _is_f32_matrix(dst, src):
        return None

    def codegen(context, builder, sig, args):
        d, dr, s, col, ln, lim = args
        x = _gather_column(builder, _array(context, builder, sig.args[2], s), col, ln, lim,
                           ir.Constant(_F32, 1.0))
        _store(builder, x, _group(builder, _array(context, builder, sig.args[0], d), dr, ln))

    return types.void(dst, types.int64, src, types.int64, types.int64, types.int64), codegen


COLUMNS = 8  # pixels that ``columns`` transposes at once
_HALF = COLUMNS // 2


def _every(builder, flag, count):
    """A vector of ``count`` copies of the i1 ``flag``."""
    mask = ir.VectorType(ir.IntType(1), count)
    one = builder.insert_element(ir.Constant(mask, ir.Undefined), flag, ir.Constant(_I32, 0))
    return builder.shuffle_vector(one, ir.Constant(mask, ir.Undefined),
                                  ir.Constant(ir.VectorType(_I32, count), [0] * count))


def _transpose(builder, rows):
    """The transpose of 8 vectors of 8 floats: three rounds of interleaving vector i with
    vector i + 4 (lower halves, then upper halves)."""
    low = ir.Constant(ir.VectorType(_I32, COLUMNS), [i // 2 + (i % 2) * COLUMNS for i in range(COLUMNS)])
    high = ir.Constant(ir.VectorType(_I32, COLUMNS),
                       [_HALF + i // 2 + (i % 2) * COLUMNS for i in range(COLUMNS)])
    for _ in range(3):
        rows = [builder.shuffle_vector(rows[i], rows[i + _HALF], mask)
                for i in range(_HALF) for mask in (low, high)]
    return rows


@intrinsic
def columns(typingctx, dst, src, col, lane, limit, fill):
    """dst[b, g] = src[g, col + b] for the COLUMNS rows b of dst and the rows g of the
    group [lane, lane + LANES) below ``limit`` (``fill`` in the others): COLUMNS pixels'
    classes from label-first src (C, N), col + COLUMNS <= N, by 8 x 8 transposes in
    registers (a gather per pixel costs several times more)."""
    if not _is_f32_matrix(dst, src):
        return None
    vec8 = ir.VectorType(_F32, COLUMNS)

    def codegen(context, builder, sig, args):
        d, s, col, ln, lim, fill_value = args
        src_a = _array(context, builder, sig.args[1], s)
        dst_a = _array(context, builder, sig.args[0], d)
        cols = cgutils.unpack_tuple(builder, src_a.shape, 2)[1]
        filled = builder.insert_element(ir.Constant(vec8, ir.Undefined), fill_value,
                                        ir.Constant(_I32, 0))
        filled = builder.shuffle_vector(filled, ir.Constant(vec8, ir.Undefined),
                                        ir.Constant(ir.VectorType(_I32, COLUMNS), [0] * COLUMNS))
        rows = []
        for j in range(LANES):
            k = builder.add(ln, ir.Constant(ln.type, j))
            inside = builder.icmp_signed("<", k, lim)
            row = builder.select(inside, k, builder.sub(lim, ir.Constant(lim.type, 1)))  # in bounds
            ptr = builder.gep(src_a.data, [builder.add(builder.mul(row, cols), col)])
            v = builder.load(builder.bitcast(ptr, vec8.as_pointer()), align=4)
            # A vector condition: a scalar one would become a branch around the load.
            rows.append(builder.select(_every(builder, inside, COLUMNS), v, filled))
        blocks = [_transpose(builder, rows[t:t + COLUMNS]) for t in range(0, LANES, COLUMNS)]
        for b in range(COLUMNS):
            out = blocks[0][b]
            if len(blocks) == 2:
                out = builder.shuffle_vector(out, blocks[1][b], ir.Constant(_IVEC, list(range(LANES))))
            _store(builder, out, _group(builder, dst_a, ir.Constant(ir.IntType(64), b), ln))

    return types.void(dst, src, types.int64, types.int64, types.int64, types.float32), codegen


@intrinsic
def to_columns(typingctx, dst, src, scale, col, lane, limit):
    """dst[g, col + b] = src[b, g] * scale[b] for the COLUMNS rows b of src and the rows g
    of the group [lane, lane + LANES) below ``limit``: COLUMNS pixels' Q into label-first
    dst (C, N), col + COLUMNS <= N, by 8 x 8 transposes in registers (``columns``'
    inverse; the products are the scalar ones)."""
    if not (_is_f32_matrix(dst, src) and isinstance(scale, types.Array)
            and scale.dtype == types.float32 and scale.ndim == 1):
        return None
    vec8 = ir.VectorType(_F32, COLUMNS)

    def codegen(context, builder, sig, args):
        d, s, sc, col, ln, lim = args
        dst_a = _array(context, builder, sig.args[0], d)
        src_a = _array(context, builder, sig.args[1], s)
        scale_a = _array(context, builder, sig.args[2], sc)
        cols = cgutils.unpack_tuple(builder, dst_a.shape, 2)[1]
        rows = []
        for b in range(COLUMNS):
            row = ir.Constant(ir.IntType(64), b)
            factor = builder.load(builder.gep(scale_a.data, [row]))
            rows.append(builder.fmul(_load(builder, _group(builder, src_a, row, ln)),
                                     _splat(builder, factor)))
        for t in range(0, LANES, COLUMNS):  # the lanes t .. t + 7 of the pixels' rows
            half = ir.Constant(ir.VectorType(_I32, COLUMNS), list(range(t, t + COLUMNS)))
            block = _transpose(builder, [builder.shuffle_vector(r, r, half) for r in rows])
            for j in range(COLUMNS):
                k = builder.add(ln, ir.Constant(ln.type, t + j))
                with builder.if_then(builder.icmp_signed("<", k, lim), likely=True):
                    ptr = builder.gep(dst_a.data, [builder.add(builder.mul(k, cols), col)])
                    builder.store(block[j], builder.bitcast(ptr, vec8.as_pointer()), align=4)

    return types.void(dst, src, scale, types.int64, types.int64, types.int64), codegen


@intrinsic
def scaled_max(typingctx, x, row, lane, scale):
    """max of x[row, g] * scale over the group g = [lane, lane + LANES)."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        q = builder.fmul(_load(builder, xp), _splat(builder, args[3]))
        return _call(builder, "vector.reduce.fmax", [q], result=_F32, fastmath=_FAST)

    return types.float32(x, types.int64, types.int64, types.float32), codegen


def _lowest_bit(builder, bits):
    """The index of the lowest set bit of a LANES-bit mask (LANES when none is)."""
    bits_type = ir.IntType(LANES)
    return builder.call(cgutils.get_or_insert_function(
        builder.module, ir.FunctionType(bits_type, [bits_type, ir.IntType(1)]),
        f"llvm.cttz.i{LANES}"), [bits, ir.Constant(ir.IntType(1), 0)])


@intrinsic
def lone_top(typingctx, x, row, lane, top, margin):
    """The k in [0, LANES) whose x[row, lane + k] - top >= -margin when exactly one lane of
    the group is that near the pixel's largest logit ``top``; -1 when none is, -2 when
    several are. (With exp(d) = 1 exactly at d = 0 and below 1 - margin / 2 for d <=
    -margin, a lone lane holds the pixel's largest Q, strictly: its label, with no exp.)"""
    if not _is_f32_matrix(x):
        return None
    bits_type = ir.IntType(LANES)

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        d = builder.fsub(_load(builder, xp), _splat(builder, args[3]))
        near = builder.bitcast(builder.fcmp_ordered(">=", d, builder.fneg(_splat(builder, args[4]))),
                               bits_type)
        count = builder.call(cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(bits_type, [bits_type]), f"llvm.ctpop.i{LANES}"), [near])
        first = _lowest_bit(builder, near)
        i64 = ir.IntType(64)
        several = builder.select(builder.icmp_unsigned("==", count, ir.Constant(bits_type, 0)),
                                 ir.Constant(i64, -1), ir.Constant(i64, -2))
        return builder.select(builder.icmp_unsigned("==", count, ir.Constant(bits_type, 1)),
                              builder.zext(first, i64), several)

    return types.int64(x, types.int64, types.int64, types.float32, types.float32), codegen


@intrinsic
def first_equal(typingctx, x, row, lane, scale, value):
    """The first k in [0, LANES) with x[row, lane + k] * scale == value (LANES if none):
    with ``scaled_max``, the argmax of a pixel's Q, the first of equal values."""
    if not _is_f32_matrix(x):
        return None

    def codegen(context, builder, sig, args):
        xp = _group(builder, _array(context, builder, sig.args[0], args[0]), args[1], args[2])
        q = builder.fmul(_load(builder, xp), _splat(builder, args[3]))
        bits = builder.bitcast(builder.fcmp_ordered("==", q, _splat(builder, args[4])),
                               ir.IntType(LANES))
        return builder.zext(_lowest_bit(builder, bits), ir.IntType(64))

    return types.int64(x, types.int64, types.int64, types.float32, types.float32), codegen
