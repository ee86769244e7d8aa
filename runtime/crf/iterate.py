"""Mean-field iterations as one team kernel: every phase of every iteration in one region.

An iteration has 2 + A phases (A: the most blur axes of the two lattices, 6 for the
bilateral one), each ending when all its chunks are done (:mod:`tseg.runtime.crf.team`):

1. the pixel pass (:func:`tseg.runtime.crf.meanfield.pixel_pass`): Q from the previous
   messages, splatted; its chunks are the fixed splat tasks, so sums do not depend on
   the threads;
2. the gather (:func:`~tseg.runtime.crf.meanfield.gather_messages`): a lattice that fits
   a core's caches is gathered and blurred whole, as one chunk (shared, its rows would
   travel between cores at every axis); a big one in chunks of vertices;
3. blur axis 0, 1, ... of the big lattices (:func:`~tseg.runtime.crf.meanfield.blur_axis`),
   in chunks of vertices, ping-ponging between each lattice's two buffers.

Each vertex is computed by one chunk the same way whatever the chunks, so results equal
those of a single thread bit for bit. A call costs one hand-off to the helper threads
(about 20 us here) instead of two or more per iteration.
"""

import numpy as np
from numba import njit

from tseg.runtime.crf import meanfield, parallel, team
from tseg.runtime.crf.meanfield import blur_axis, blur_lattice, gather_messages, pixel_pass


@njit(cache=True, nogil=True)
def _whole(k):
    """Gather and blur a whole lattice (one chunk: a small lattice stays in one core's
    cache). k: (values, scratch, accs, ranges, gain, diagonal, neighbours, chunk)."""
    gather_messages(k[0], k[2], k[3], k[4], k[5], 0, k[6].shape[1])
    blur_lattice(k[0], k[1], k[6], 0, 1)


@njit(cache=True, nogil=True)
def _rows(k, axis):
    """Vertices that a lattice shares out in chunks in phase ``axis`` (-1: the gather)."""
    return k[6].shape[1] if k[7] > 0 and axis < k[6].shape[0] else 0


@njit(cache=True, nogil=True)
def _part(k, axis, c):
    """Chunk c of a shared lattice's phase ``axis``: gather, or blur one axis."""
    start, stop = c * k[7], min(k[6].shape[1], (c + 1) * k[7])
    if axis < 0:
        gather_messages(k[0], k[2], k[3], k[4], k[5], start, stop)
    elif axis % 2 == 0:
        blur_axis(k[0], k[1], k[6], axis, start, stop)
    else:
        blur_axis(k[1], k[0], k[6], axis, start, stop)


@njit(cache=True, nogil=True)
def _vertex_phase(g, b, axis, state, phase):
    """The gather (axis -1) or one blur axis of both lattices, chunk by chunk; False if
    the team stopped. A lattice whose chunk (item 7) is 0 runs whole in the gather phase.
    g, b: (values, scratch, accs, ranges, gain, diagonal, neighbours, chunk)."""
    whole = (1 if axis < 0 and g[7] == 0 else 0) + (1 if axis < 0 and b[7] == 0 else 0)
    g_chunks = -(-_rows(g, axis) // max(1, g[7]))
    count = whole + g_chunks + -(-_rows(b, axis) // max(1, b[7]))
    c = team.take(state, phase)
    while c < count:
        if c < whole:
            if c == 0 and g[7] == 0:
                _whole(g)
            else:
                _whole(b)
        elif c < whole + g_chunks:
            _part(g, axis, c - whole)
        else:
            _part(b, axis, c - whole - g_chunks)
        team.done(state, phase)
        c = team.take(state, phase)
    return team.finish(state, phase, count)


@njit(cache=True, nogil=True, error_model="numpy")
def iterate(base, unary, clip, num_classes, g_off, g_w, g_msg, b_off, b_w, b_msg, ahead_off,
            g, b, bounds, groups, iterations, state):
    """Run ``iterations`` mean-field iterations as a team (see the module).

    Args:
        base, unary, clip, num_classes, g_off, g_w, b_off, b_w, ahead_off, groups: as
            :func:`~tseg.runtime.crf.meanfield.pixel_pass` takes them; ``unary`` is
            read by the first iteration only (None: Q comes from the messages).
        g_msg, b_msg: the buffer (values or scratch) that holds each lattice's blurred
            messages after a gather and blur.
        g, b: per lattice (values, scratch, accs, ranges, gain, diagonal, neighbours),
            see :func:`~tseg.runtime.crf.meanfield.gather_messages`; ranges (T, 3)
            [lo, hi, base] per splat task.
        bounds: (T + 1,) int64 pixel bounds of the splat tasks.
        iterations: iterations to run.
        state: :func:`tseg.runtime.crf.team.new_state` of ``iterations * phases(g, b)``.
    """
    tasks = bounds.shape[0] - 1
    axes = max(g[6].shape[0], b[6].shape[0])
    for it in range(iterations):
        phase = it * (2 + axes)
        t = team.take(state, phase)
        while t < tasks:
            g_shift = g[3][t, 2] - g[3][t, 0]
            b_shift = b[3][t, 2] - b[3][t, 0]
            count = bounds[t + 1] - bounds[t]
            if it == 0 and unary is not None:
                pixel_pass(base, unary, clip, num_classes, g_off, g_w, g_msg, b_off, b_w, b_msg,
                           ahead_off, g[2], g_shift, b[2], b_shift, None, None, groups,
                           bounds[t], 0, count)
            else:
                pixel_pass(base, None, clip, num_classes, g_off, g_w, g_msg, b_off, b_w, b_msg,
                           ahead_off, g[2], g_shift, b[2], b_shift, None, None, groups,
                           bounds[t], 0, count)
            team.done(state, phase)
            t = team.take(state, phase)
        if not team.finish(state, phase, tasks):
            return
        for axis in range(-1, axes):
            if not _vertex_phase(g, b, axis, state, phase + 2 + axis):
                return


def _with_chunk(k: tuple, threads: int) -> tuple:
    """A lattice's team arguments with its chunk of vertices: 0 (whole, on one thread)
    for a lattice that fits a core's caches, else about a quarter of a thread's share."""
    rows = k[6].shape[1]
    if threads <= 1 or rows < meanfield.SHARED_BLUR_ROWS:
        return (*k, 0)
    return (*k, max(meanfield.MIN_SHARED_CHUNK, -(-rows // (4 * threads))))


def run(args: tuple, g: tuple, b: tuple, bounds: np.ndarray, groups: tuple, iterations: int,
        threads: int) -> None:
    """Run :func:`iterate` on ``threads`` threads.

    Args:
        args: its arguments up to ``ahead_off``.
        g, b: per lattice (values, scratch, accs, ranges, gain, diagonal, neighbours).
        bounds, groups, iterations: as :func:`iterate` takes them.
        threads: threads to use.
    """
    axes = max(g[6].shape[0], b[6].shape[0])
    state = team.new_state(iterations * (2 + axes))
    parallel.run_team(iterate, (*args, _with_chunk(g, threads), _with_chunk(b, threads), bounds,
                                groups, iterations), state, threads)
