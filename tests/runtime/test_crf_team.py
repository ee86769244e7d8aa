"""The CRF's thread team (tseg.runtime.crf.team, parallel.run_team): every chunk of
every phase runs once, phases do not overlap, a failure stops the team, and a helper
that never starts holds nothing up."""

import threading

import numpy as np
import pytest
from numba import njit

from tseg.runtime.crf import parallel, team


@njit(nogil=True)
def _phased(log, order, phases, count, state):
    """Chunk c of phase p writes the number of chunks finished before it (over all
    phases) to log[p, c]: a later phase's chunk must see every earlier one done."""
    for p in range(phases):
        c = team.take(state, p)
        while c < count:
            log[p, c] = team.fetch_add(order, 0, 1)
            team.done(state, p)
            c = team.take(state, p)
        if not team.finish(state, p, count):
            return


@pytest.mark.parametrize("threads", [1, 2, 4])
def test_each_chunk_runs_once_and_phases_do_not_overlap(threads):
    phases, count = 30, 5
    log = np.full((phases, count), -1, np.int64)
    order = np.zeros(1, np.int64)
    parallel.run_team(_phased, (log, order, phases, count), team.new_state(phases), threads)
    assert order[0] == phases * count  # each chunk once
    for p in range(phases):  # phase p's chunks start after the count * p before them
        assert sorted(log[p]) == list(range(p * count, (p + 1) * count))


@njit(nogil=True)
def _fails_in_phase_one(phases, state):
    for p in range(phases):
        c = team.take(state, p)
        while c < 4:
            if p == 1 and c == 2:
                raise ValueError("chunk 2 of phase 1")
            team.done(state, p)
            c = team.take(state, p)
        if not team.finish(state, p, 4):
            return


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_failing_chunk_stops_the_team_and_is_raised(threads):
    with pytest.raises(ValueError, match="chunk 2 of phase 1"):
        parallel.run_team(_fails_in_phase_one, (5,), team.new_state(5), threads)


def test_a_helper_that_never_starts_holds_nothing_up():
    """Every pooled worker busy: the caller runs every chunk itself and returns."""
    release = threading.Event()
    busy = [parallel._workers().submit(release.wait) for _ in range(parallel.available_threads())]
    try:
        phases, count = 4, 3
        log = np.full((phases, count), -1, np.int64)
        order = np.zeros(1, np.int64)
        parallel.run_team(_phased, (log, order, phases, count), team.new_state(phases), 2)
        assert order[0] == phases * count
    finally:
        release.set()
        for future in busy:
            future.result()
