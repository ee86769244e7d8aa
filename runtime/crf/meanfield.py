"""Numba kernels of mean field: one fused pass over pixels, then small passes over vertices.

One iteration, for both lattices (Gaussian and bilateral):

1. ``pixel_pass``: per pixel, logits = -unary + slice of the blurred messages, Q =
   softmax(logits), then Q is splatted (scattered) onto the pixel's simplex corners.
   Pixels stream in raster order, so the vertex rows they touch stay in cache, and Q
   never goes to memory except when asked for. Each task (a fixed band of pixel
   rows) splats into its own accumulator, sized for the vertex rows it touches, so
   threads need neither atomics nor locks.
2. ``gather_messages``: per vertex, sum the tasks' accumulators, apply the (negated,
   alpha-scaled) compatibility, and clear the accumulators for the next pass. (Lattices
   with a vertex per two pixels or more splat into their rows and alias rows instead:
   :mod:`tseg.runtime.crf.aliases`.)
3. ``blur``: the lattice blur, axis after axis.

Rows are pixels or vertices, lanes are labels padded to whole vector groups (see
:mod:`tseg.runtime.crf.simd`); vertex row 0 is a zero row that stands for a missing
blur neighbour, so vertex ``v`` lives in row ``v + 1``. Every kernel is serial over
``[start, stop)`` and releases the GIL; :mod:`tseg.runtime.crf.parallel` runs them.
"""

import numpy as np
from numba import njit

from tseg.runtime.crf import parallel, simd, vecmath

_HUGE = np.float32(3.4028235e38)
_BLOCK = vecmath.COLUMNS  # pixels whose updates are interleaved (8)
_AHEAD = 16  # rows prefetched this many vertices (pixels) ahead in the blur (pixel pass)
_PREFETCH_ROWS = 1 << 16  # lattices with at least this many vertices outgrow the L2 cache
GATHER_BLOCK = 4096  # vertices summed from one list of the bands that meet them


def padded_labels(num_classes: int) -> int:
    """Lanes stored per pixel and vertex: the classes padded to whole vector groups."""
    return -(-num_classes // simd.LANES) * simd.LANES


@njit(cache=True, nogil=True, error_model="numpy")  # no zero-division branch per pixel
def pixel_pass(base, unary, clip, invalid, num_classes, g_off, g_w, g_values, b_off, b_w,
               b_values, ahead_off, g_acc, g_shift, b_acc, b_shift, q_out, labels_out, rows_out,
               groups, first, start, stop):
    """Q at pixels first + [start, stop): splatted onto both lattices when ``q_out``,
    ``labels_out`` and ``rows_out`` are None, else written to the one that is not.

    Q = softmax(logits), logits = -unary (+ the messages sliced at the pixel). One
    flat loop with intrinsics only: a call to a helper that takes arrays costs
    atomic reference counting per pixel.

    Args:
        base: (N, lanes) -unary, pixel-major; filled from ``unary`` on the first pass,
            padded lanes -huge (probability 0).
        unary: on the first pass (Q = softmax(-unary), no messages yet): (C, N)
            label-first energies, or probabilities when ``clip`` > 0 (then -unary =
            log(clip(p, clip, 1)), pydensecrf's unary_from_softmax), or (C, 0) when
            ``base`` is filled already (see :mod:`tseg.runtime.crf.logits`). None on
            the later passes, which add the messages.
        clip: float32, 0 or the smallest probability kept (a normal float).
        invalid: (1,) uint8, set to 1 when a probability read from ``unary`` lies
            outside [0, 1] or is NaN (the probabilities are checked as they are read:
            no pass over them before); never cleared here.
        num_classes: C.
        g_off, g_w, g_values: Gaussian lattice: (N, 3) corner rows, (N, 3) weights,
            (M + 1, lanes) blurred messages of the previous Q.
        b_off, b_w, b_values: the same for the bilateral lattice.
        ahead_off: b_off where the bilateral lattice outgrows the L2 cache, its rows then
            prefetched _AHEAD pixels ahead, else None (:func:`prefetched`).
        g_acc, b_acc: the splat accumulators; vertex row v of this task goes to
            row v + g_shift (b_shift) (see gather_messages); a shift of None: the
            offsets are alias rows with first-touch bits, splatted as they are
            (:mod:`tseg.runtime.crf.aliases`).
        q_out: (C, N) label-first output, or None.
        labels_out: (N,) integer output: the argmax of Q (the first of equal values,
            as ``Q.argmax(0)``), or None. Both None: splat. (None, here and for
            ``unary`` and ``ahead_off``, not an empty array or a flag: each kind of pass
            compiles to a variant of its own, free of the others' code.)
        rows_out: (x, scale), (N, lanes) and (N,) float32: each pixel's exponentials
            and 1 / their sum (Q = x * scale), for the two-phase splat
            (:mod:`tseg.runtime.crf.split`); or None.
        groups: a tuple of lanes // LANES items (:func:`tseg.runtime.crf.simd.lane_groups`),
            a compile-time row length.
        first: the task's first pixel; start, stop: the range within the task.
    """
    lanes = simd.LANES * len(groups)  # a constant: row addresses need no multiplication
    for rows in (base, g_values, b_values, g_acc, b_acc):
        if rows.shape[1] != lanes:
            raise ValueError("pixel_pass: rows of another length than groups say")
    splat = q_out is None and labels_out is None and rows_out is None
    use_messages = unary is None
    # _BLOCK pixels go through each step together: their dependency chains (slice,
    # max, exp, sum, division) are independent, so the CPU overlaps them.
    x = np.empty((_BLOCK, lanes), np.float32)
    top = np.empty(_BLOCK, np.float32)
    scale = np.empty(_BLOCK, np.float32)
    valid = True  # every probability read so far lies in [0, 1]
    for p0 in range(first + start, first + stop, _BLOCK):
        count = min(_BLOCK, first + stop - p0)
        # A big bilateral lattice's rows are read in no order a hardware prefetcher can
        # guess (the Gaussian one's follow the pixels).
        if ahead_off is not None:
            for b in range(_BLOCK if p0 + _AHEAD + _BLOCK <= first + stop else 0):
                for r in range(ahead_off.shape[1]):
                    row = ahead_off[p0 + _AHEAD + b, r] & simd.ROW_BITS
                    if use_messages:
                        simd.prefetch(b_values, row)
                    if splat:
                        simd.prefetch(b_acc, row if b_shift is None else row + b_shift)
        if unary is not None and unary.shape[1] != 0 and count == _BLOCK:
            for lane in range(0, lanes, simd.LANES):  # the block's classes: one transpose
                vecmath.columns(x, unary, p0, lane, num_classes, np.float32(1.0))
        for b in range(count):
            p = p0 + b
            top[b] = -_HUGE
            if unary is None:
                for lane in range(0, lanes, simd.LANES):
                    top[b] = max(top[b], simd.logits(x, b, lane, lanes, base, p, g_values, g_off,
                                                     g_w, b_values, b_off, b_w))
            elif unary.shape[1] != 0:  # -unary from energies or probabilities
                for lane in range(0, lanes, simd.LANES):
                    if count < _BLOCK:  # a short last block: a gather per pixel
                        vecmath.column(x, b, unary, p, lane, num_classes)
                    if clip > 0:
                        valid &= vecmath.log_clip(x, b, lane, clip, num_classes)
                    else:
                        vecmath.negate(x, b, lane, num_classes)
                    simd.copy(base, p, x, b, lane)
                    top[b] = max(top[b], simd.group_max(x, b, lane))
            else:
                for lane in range(0, lanes, simd.LANES):
                    simd.copy(x, b, base, p, lane)
                    top[b] = max(top[b], simd.group_max(x, b, lane))
        if labels_out is not None:
            for b in range(count):
                labels_out[p0 + b] = _label(x, b, top[b], lanes)
            continue
        for b in range(count):
            scale[b] = _exp_scale(x, b, top[b], lanes)  # Q = x * scale
        if rows_out is not None:
            for b in range(count):
                rows_out[1][p0 + b] = scale[b]
                for lane in range(0, lanes, simd.LANES):
                    simd.copy(rows_out[0], p0 + b, x, b, lane)
        elif q_out is not None:  # simple tests of arguments: Numba prunes the other branches
            if count == _BLOCK:
                for lane in range(0, lanes, simd.LANES):  # label-first: one transpose
                    vecmath.to_columns(q_out, x, scale, p0, lane, num_classes)
            else:
                for k in range(num_classes):
                    for b in range(count):
                        q_out[k, p0 + b] = x[b, k] * scale[b]
        else:
            for b in range(count):
                for lane in range(0, lanes, simd.LANES):
                    simd.splat(x, b, lane, lanes, scale[b], p0 + b, g_acc, g_shift, g_off, g_w,
                               b_acc, b_shift, b_off, b_w)
    if not valid:
        invalid[0] = 1


_LONE_MARGIN = np.float32(1e-5)  # logits this far below a pixel's largest have a smaller Q


@njit(cache=True, nogil=True, inline="always")
def _exp_scale(x, b, top, lanes):
    """x[b] = exp(x[b] - top) in place; returns 1 / their sum (Q = x[b] * that)."""
    total = np.float32(0.0)
    for lane in range(0, lanes, simd.LANES):
        total += simd.exp_shifted(x, b, lane, top)
    return np.float32(1.0) / total


@njit(cache=True, nogil=True, inline="always")
def _label(x, b, top, lanes):
    """The argmax of pixel b's Q = softmax(x[b]) (the first of equal values, as
    ``Q.argmax(0)``): without the softmax when one logit stands out (see
    vecmath.lone_top), else from Q itself (x[b] is then overwritten)."""
    lone = -1
    for lane in range(0, lanes, simd.LANES):
        k = vecmath.lone_top(x, b, lane, top, _LONE_MARGIN)
        if k == -2 or (k >= 0 and lone >= 0):
            lone = -2
            break
        if k >= 0:
            lone = lane + k
    if lone >= 0:
        return lone
    scale = _exp_scale(x, b, top, lanes)
    top_q = np.float32(-1.0)
    best = 0
    for lane in range(0, lanes, simd.LANES):  # the first group with the largest Q, its first lane
        q = vecmath.scaled_max(x, b, lane, scale)
        if q > top_q:
            top_q = q
            best = lane
    return best + vecmath.first_equal(x, b, best, scale, top_q)


def prefetched(offsets: np.ndarray, values: np.ndarray) -> np.ndarray | None:
    """pixel_pass's ``ahead_off`` for a lattice's corner rows and (M + 1, lanes) values."""
    return offsets if values.shape[0] >= _PREFETCH_ROWS else None


@njit(cache=True, nogil=True)
def gather_messages(values, accs, ranges, gain, diagonal, groups, start, stop):
    """values[v + 1] = gain applied to the tasks' splats of vertex v; those are cleared.

    Args:
        values: (M + 1, lanes) the blur's input.
        accs: (R, lanes) the splat accumulators: task t holds vertex rows
            ranges[t, 0] .. ranges[t, 1] from row ranges[t, 2] on (a task touches a
            band of the vertices, not all of them).
        ranges: (T, 3) int64, see accs.
        gain: (lanes, lanes) what each label's message adds to each label's logits,
            row j for label j (the compatibility's transpose, negated, times alpha);
            for a diagonal one only row 0 is read, holding the diagonal.
        diagonal: whether the compatibility is diagonal (Potts or a vector).
        groups: :func:`tseg.runtime.crf.simd.lane_groups` of the rows (see blur_axis).
    """
    lanes = simd.LANES * len(groups)
    if values.shape[1] != lanes or accs.shape[1] != lanes or gain.shape[1] != lanes:
        raise ValueError("gather_messages: rows of another length than groups say")
    total = np.empty((1, lanes), np.float32)
    near = np.empty(ranges.shape[0], np.int64)
    for block in range(start + 1, stop + 1, GATHER_BLOCK):
        end = min(stop + 1, block + GATHER_BLOCK)
        # With many tasks (large images) a vertex lies in the bands of a few.
        count = bands_meeting(ranges, block, end - 1, near)
        for v in range(block, end):
            for lane in range(0, lanes, simd.LANES):
                simd.zero(total, 0, lane)
            for k in range(count):  # in task order: sums do not depend on threads
                t = near[k]
                if ranges[t, 0] <= v <= ranges[t, 1]:
                    row = v - ranges[t, 0] + ranges[t, 2]
                    for lane in range(0, lanes, simd.LANES):
                        simd.axpy(total, 0, accs, row, lane, np.float32(1.0))
                        simd.zero(accs, row, lane)
            if diagonal:
                for lane in range(0, lanes, simd.LANES):
                    simd.multiply(values, v, total, 0, gain, 0, lane)
            else:
                apply_matrix_row(values, v, total, gain)


@njit(cache=True, nogil=True)
def bands_meeting(bands, first, last, near):
    """near[:count] = the indices k of the bands that meet rows [first, last], in order;
    returns count. ``bands``: (K, >= 2) int64, band k's first and last row in columns 0
    and 1 (empty when the last is below the first)."""
    count = 0
    for k in range(bands.shape[0]):
        if bands[k, 0] <= last and bands[k, 1] >= first:
            near[count] = k
            count += 1
    return count


@njit(cache=True, nogil=True)
def apply_matrix_row(values, v, total, gain):
    """values[v] = sum over labels j of total[0, j] * gain[j]: a full compatibility."""
    lanes = values.shape[1]
    for lane in range(0, lanes, simd.LANES):
        simd.zero(values, v, lane)
    for j in range(lanes):
        w = total[0, j]
        if w != 0:
            for lane in range(0, lanes, simd.LANES):
                simd.axpy(values, v, gain, j, lane, w)


@njit(cache=True, nogil=True)
def blur_axis(src, dst, nbr, axis, groups, start, stop):
    """dst[v] = src[v] + (src[n1] + src[n2]) / 2 along one lattice axis, v in range."""
    scaled_blur_axis(src, dst, nbr, axis, groups, None, start, stop)


@njit(cache=True, nogil=True)
def scaled_blur_axis(src, dst, nbr, axis, groups, gain, start, stop):
    """:func:`blur_axis`, times a diagonal compatibility gain[0] unless ``gain`` is None
    (a compile-time choice: each compiles to a variant of its own).

    ``groups`` (:func:`tseg.runtime.crf.simd.lane_groups` of the rows) makes the row
    length a compile-time constant, and the neighbours are read through a flat view
    with unsigned indices: without either, row addresses take multiplications and
    Numba's negative-index checks, and the blur ran 1.3-1.8 times slower."""
    lanes = simd.LANES * len(groups)
    if src.shape[1] != lanes or dst.shape[1] != lanes:
        raise ValueError("blur_axis: rows of another length than groups say")
    if gain is not None and gain.shape[1] != lanes:
        raise ValueError("blur_axis: a gain of another length than groups say")
    m = nbr.shape[1]
    pairs = nbr.reshape(-1)[axis * 2 * m:(axis + 1) * 2 * m]  # (n1, n2) of each vertex
    big = m >= _PREFETCH_ROWS
    for v in range(start, stop):
        i = np.uint64(2 * v)
        if big and v + _AHEAD < stop:  # neighbours' rows: random reads in big lattices
            simd.prefetch(src, np.int64(pairs[i + np.uint64(2 * _AHEAD)]))
            simd.prefetch(src, np.int64(pairs[i + np.uint64(2 * _AHEAD + 1)]))
        a = np.int64(pairs[i])
        b = np.int64(pairs[i + np.uint64(1)])
        for lane in range(0, lanes, simd.LANES):
            if gain is None:
                simd.blur_step(dst, src, v + 1, a, b, lane)
            else:
                simd.blur_step_scaled(dst, src, v + 1, a, b, gain, lane)


@njit(cache=True, nogil=True)
def blur_lattice(values, scratch, nbr, groups, start, stop):
    """The whole blur of one lattice, axis after axis, ping-ponging between the buffers
    (the result is in ``values`` for an even number of axes, else in ``scratch``)."""
    src, dst = values, scratch
    for axis in range(nbr.shape[0]):
        blur_axis(src, dst, nbr, axis, groups, 0, nbr.shape[1])
        src, dst = dst, src


_SHARED_BLUR_ROWS = 1 << 16  # lattices at least this big share each axis among threads


def _blur_shared(pairs: list, threads: int) -> None:
    """Blur big lattices axis by axis, each axis shared among the threads.

    Args:
        pairs: (values, scratch, neighbours) per lattice; values hold the splat and
            row 0 of both buffers is zero. The result lands as blur_lattice's does.
        threads: threads to use.
    """
    groups = [simd.lane_groups(values.shape[1]) for values, _, _ in pairs]
    for axis in range(max((nbr.shape[0] for _, _, nbr in pairs), default=0)):
        parallel.run([(blur_axis, ((values, scratch) if axis % 2 == 0 else (scratch, values))
                       + (nbr, axis, g), nbr.shape[1])
                      for (values, scratch, nbr), g in zip(pairs, groups, strict=True)
                      if axis < nbr.shape[0]], threads)


@njit(cache=True, nogil=True)
def lattice_messages(values, scratch, accs, ranges, gain, diagonal, nbr, groups, start, stop):
    """gather_messages over every vertex of one lattice, then its whole blur: one job,
    so a small lattice costs one parallel region per iteration, not two."""
    gather_messages(values, accs, ranges, gain, diagonal, groups, 0, nbr.shape[1])
    blur_lattice(values, scratch, nbr, groups, 0, 1)


def messages(kernels: list[tuple], threads: int) -> list:
    """The next pass's messages of several lattices: gather, compatibility, blur.

    Small lattices run as one job each (an axis is too little work to share); big ones
    gather on all threads, then blur axis by axis on all threads.

    Args:
        kernels: per lattice, (values, scratch, accs, ranges, gain, diagonal,
            neighbours), as gather_messages and blur_lattice take them.
        threads: threads to use.

    Returns:
        Per lattice, the buffer (values or scratch) that holds the messages.
    """
    shared = [threads > 1 and k[6].shape[1] >= _SHARED_BLUR_ROWS for k in kernels]
    big = [k for k, is_big in zip(kernels, shared, strict=True) if is_big]
    parallel.run([(lattice_messages, (*k, simd.lane_groups(k[0].shape[1])), 1)
                  for k, is_big in zip(kernels, shared, strict=True) if not is_big]
                 + [(gather_messages, (k[0], *k[2:6], simd.lane_groups(k[0].shape[1])),
                     k[6].shape[1]) for k in big], threads)
    _blur_shared([(k[0], k[1], k[6]) for k in big], threads)
    return [k[0] if k[6].shape[0] % 2 == 0 else k[1] for k in kernels]


def task_bounds(n: int) -> list[int]:
    """Pixel ranges of the splat tasks: fixed by the image size alone, so that the
    sums (and so the results) do not depend on the number of threads. They fix the
    order of the sums, not the threads: on more than two threads a task, the pass runs
    in two phases that every thread shares (:mod:`tseg.runtime.crf.split`).

    Four tasks up to 1 Mpixel (more cost a 512 x 512 image 5% on two cores: shorter
    bands, more overlapping accumulators), eight from there (more cores pay off on
    more pixels); fewer for tiny images.
    """
    tasks = max(1, min(4, n // 1024), min(8, n // 131072))
    return [n * t // tasks for t in range(tasks + 1)]
