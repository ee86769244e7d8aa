"""Mean-field kernels on the device: unary, pixel pass, gather-based splat, compatibility, blur.

Layouts are label-first so that neighbouring threads read neighbouring addresses:
pixel arrays (C, N), vertex arrays (C, M + 1) whose column 0 is zero and stands for a
missing blur neighbour (vertex v is column v + 1, as the CPU path's rows). A lattice's
``rows`` (P, d+1) int32 hold each pixel corner's vertex column and ``weights`` (n * (d+1),)
float32 its barycentric weight times the symmetric normalisation (see :mod:`.lattice`).

One iteration, per lattice: :func:`pixel_pass` (Q from the previous messages),
:func:`splat` (each vertex sums its pixels' Q in pixel order, times the diagonal
compatibility), :func:`compat` for a full matrix, then :func:`blur_axis` per axis.
Every sum has one thread and a fixed order: no float atomics.
"""

import math

import numpy as np
from numba import cuda

_HUGE = np.float32(3.4028235e38)


@cuda.jit(cache=True)
def flag_nonfinite(x, flag):
    """flag[0] = 1 when an item of x ((n,) float32) is NaN or infinite (a race of equal writes)."""
    for i in range(cuda.grid(1), x.shape[0], cuda.gridsize(1)):
        if math.isnan(x[i]) or math.isinf(x[i]):
            flag[0] = 1


@cuda.jit(cache=True)
def base_from_probs(probs, clip, base):
    """base = log(clip(probs, clip, 1)): -unary as pydensecrf's unary_from_softmax.
    probs, base: (C, N) float32."""
    for p in range(cuda.grid(1), base.shape[1], cuda.gridsize(1)):
        for k in range(base.shape[0]):
            base[k, p] = math.log(min(max(probs[k, p], clip), np.float32(1.0)))


@cuda.jit(cache=True)
def base_from_logits(logits, low_w, r0, r1, wr, c0, c1, wc, log_clip, base):
    """base[:, p] = log(clip(softmax(v), clip, 1)) as max(v - max(v) - log(sum(exp(v - max(v)))),
    log_clip), v the logits resized bilinearly to pixel p as resize_scores does (rows, then
    columns): the CPU path's fill (tseg.runtime.crf.unary.base_from_logits), one thread a pixel.

    Args:
        logits: (C, h * w) float32 at the model's resolution; low_w: w.
        r0, r1, wr: per output row, the upper and lower source rows and the lower's weight
            (tseg.runtime.scores._source_grid); c0, c1, wc: the same per output column.
        log_clip: float32 log of the smallest probability kept.
        base: (C, H * W) float32.
    """
    width = wc.shape[0]
    one = np.float32(1.0)
    for p in range(cuda.grid(1), base.shape[1], cuda.gridsize(1)):
        y = p // width
        x = p - y * width
        up, down, a = r0[y] * low_w, r1[y] * low_w, wr[y]
        left, right, w = c0[x], c1[x], wc[x]
        top = -_HUGE
        for k in range(base.shape[0]):
            at_left = logits[k, up + left] * (one - a) + logits[k, down + left] * a
            at_right = logits[k, up + right] * (one - a) + logits[k, down + right] * a
            v = at_left * (one - w) + at_right * w
            base[k, p] = v
            top = max(top, v)
        total = np.float32(0.0)
        for k in range(base.shape[0]):
            total += math.exp(base[k, p] - top)
        log_total = math.log(total)
        for k in range(base.shape[0]):
            base[k, p] = max(base[k, p] - top - log_total, log_clip)


@cuda.jit(cache=True)
def base_from_unary(unary, base):
    """base = -unary, (C, N) float32."""
    for p in range(cuda.grid(1), base.shape[1], cuda.gridsize(1)):
        for k in range(base.shape[0]):
            base[k, p] = -unary[k, p]


@cuda.jit(device=True)
def _slice(values, rows, weights, k, p):
    """Label k's messages at pixel p: sum over corners r of weight * values[k, row]."""
    dp1 = rows.shape[1]
    total = np.float32(0.0)
    for r in range(dp1):
        total += weights[p * dp1 + r] * values[k, rows[p, r]]
    return total


@cuda.jit(cache=True)
def pixel_pass(base, g_rows, g_weights, g_values, b_rows, b_weights, b_values, use_messages, q):
    """q[:, p] = softmax(base[:, p] + both lattices' messages sliced at p) (messages
    left out when not ``use_messages``: the first pass). All (C, N) float32."""
    num_classes = base.shape[0]
    for p in range(cuda.grid(1), base.shape[1], cuda.gridsize(1)):
        top = -_HUGE
        for k in range(num_classes):
            x = base[k, p]
            if use_messages:
                x += _slice(g_values, g_rows, g_weights, k, p)
                x += _slice(b_values, b_rows, b_weights, k, p)
            q[k, p] = x
            top = max(top, x)
        total = np.float32(0.0)
        for k in range(num_classes):
            e = math.exp(q[k, p] - top)
            q[k, p] = e
            total += e
        scale = np.float32(1.0) / total
        for k in range(num_classes):
            q[k, p] *= scale


@cuda.jit(cache=True)
def argmax_labels(q, labels):
    """labels[p] = the first label of largest Q at pixel p; q (C, N)."""
    for p in range(cuda.grid(1), q.shape[1], cuda.gridsize(1)):
        best = 0
        top = q[0, p]
        for k in range(1, q.shape[0]):
            if q[k, p] > top:
                best = k
                top = q[k, p]
        labels[p] = best


@cuda.jit(cache=True)
def splat(q, starts, entries, weights, gain, out):
    """out[k, v + 1] = gain[k] * sum of weights[e] * q[k, pixel of e] over vertex v's
    entries, in their (sorted) order.

    Args:
        q: (C, N) float32 values at the pixels.
        starts: (M + 1,) int32 segment bounds; entries: the segments' entry ids.
        weights: (n * (d+1),) float32 per entry; its d + 1 is entries' stride.
        gain: (C,) float32, a diagonal compatibility (ones before a full matrix).
        out: (C, M + 1) float32.
    """
    dp1 = weights.shape[0] // q.shape[1]
    for v in range(cuda.grid(1), starts.shape[0] - 1, cuda.gridsize(1)):
        for k in range(q.shape[0]):
            total = np.float32(0.0)
            for i in range(starts[v], starts[v + 1]):
                e = entries[i]
                total += weights[e] * q[k, e // dp1]
            out[k, v + 1] = total * gain[k]


@cuda.jit(cache=True)
def compat(src, gain, dst):
    """dst[k, v] = sum over j of src[j, v] * gain[j, k] for vertex columns v >= 1:
    a full compatibility matrix (gain: (C, C), row j what label j adds to each label)."""
    for v in range(cuda.grid(1) + 1, src.shape[1], cuda.gridsize(1)):
        for k in range(dst.shape[0]):
            total = np.float32(0.0)
            for j in range(src.shape[0]):
                total += src[j, v] * gain[j, k]
            dst[k, v] = total


@cuda.jit(cache=True)
def blur_axis(src, dst, nbr, axis):
    """dst[:, v + 1] = src[:, v + 1] + (src[:, n1] + src[:, n2]) / 2 along one axis;
    nbr (d+1, M, 2) int32 neighbour columns (0: absent, a zero column)."""
    half = np.float32(0.5)
    for v in range(cuda.grid(1), nbr.shape[1], cuda.gridsize(1)):
        a = nbr[axis, v, 0]
        b = nbr[axis, v, 1]
        for k in range(src.shape[0]):
            dst[k, v + 1] = src[k, v + 1] + half * (src[k, a] + src[k, b])
