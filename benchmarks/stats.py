"""Timing: warm-up, then runs until a minimum count AND a minimum time, rows taking turns.

Rows (one callable each) are measured interleaved: every row gets a turn of about
``min_time / turns`` seconds (and at least ``ceil(min_runs / turns)`` runs), then the next
row, round after round until each row has both ``min_runs`` runs and ``min_time`` seconds
of timed runs. Machine drift (another process, thermal throttling) then hits every row alike.
Before each turn (and each row's warm-up) the timer waits ``pause`` seconds, untimed: the
previous row's idle threads (ONNX Runtime's intra-op pool, PyTorch's OpenMP team) spin for a
while after a run and would otherwise take a core from the next row.
Warm-up runs (first runs: memory arenas, JIT, caches) are excluded. A row whose callable
raises is stopped and keeps its exception; the others carry on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tseg.runtime.errors import TsegError


@dataclass(frozen=True)
class TimingPolicy:
    """How long to time each row.

    Attributes:
        warmup: untimed runs of each row first.
        min_runs: timed runs each row needs at least.
        min_time: seconds of timed runs each row needs at least.
        turns: how many turns the minimums are spread over (1: each row in one go).
        pause: untimed seconds before each turn when several rows take turns.
    """

    warmup: int = 2
    min_runs: int = 10
    min_time: float = 2.0
    turns: int = 5
    pause: float = 0.2

    def __post_init__(self) -> None:
        for name, low in (("warmup", 0), ("min_runs", 1), ("turns", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise TsegError(f"{name}: need an integer >= {low}, got {value!r:.40}")
        for name, high in (("min_time", 3600), ("pause", 60)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= high:
                raise TsegError(f"{name}: need seconds in 0..{high}, got {value!r:.40}")

    def describe(self) -> str:
        """The method, one line (printed under the table)."""
        return (
            f"{self.warmup} warm-up run(s) excluded, then at least {self.min_runs} runs and {self.min_time:g} s"
            f" per row, rows interleaved in {self.turns} turns with an untimed {self.pause:g} s pause before each"
            " (the previous row's idle threads stop spinning)"
        )


@dataclass
class Samples:
    """One row's timed runs (seconds each), or the error that stopped it."""

    durations: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def done(self, policy: TimingPolicy) -> bool:
        return self.error is not None or (
            len(self.durations) >= policy.min_runs and math.fsum(self.durations) >= policy.min_time
        )


def _turn(run: Callable[[], object], samples: Samples, policy: TimingPolicy, clock: Callable[[], float]) -> None:
    """One turn of a row: at least ceil(min_runs / turns) runs and min_time / turns seconds."""
    want_runs = math.ceil(policy.min_runs / policy.turns)
    want_time = policy.min_time / policy.turns
    count, spent = 0, 0.0
    while count < want_runs or spent < want_time:
        start = clock()
        run()
        elapsed = clock() - start
        samples.durations.append(elapsed)
        count, spent = count + 1, spent + elapsed
        if samples.done(policy):
            return


def interleave(
    runners: Sequence[Callable[[], object]],
    *,
    policy: TimingPolicy,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    on_done: Callable[[int], None] | None = None,
) -> list[Samples]:
    """Times every runner, interleaved (module docstring).

    Args:
        runners: one callable per row (a run of its batch).
        policy: warm-up, minimum runs and time, turns.
        clock: seconds (tests pass a fake one).
        sleep: waits ``policy.pause`` seconds before each turn and warm-up (only with several runners).
        on_done: called with a row's index when it has finished (or failed).

    Returns:
        One :class:`Samples` per runner, in order; a runner that raised an ``Exception``
        has it in ``error`` (KeyboardInterrupt and the like propagate).
    """
    results = [Samples() for _ in runners]
    pause = policy.pause if len(runners) > 1 else 0.0

    def guarded(index: int, action: Callable[[], None]) -> None:
        try:
            action()
        except Exception as err:  # a failing row (a provider error, out of memory) must not stop the others
            results[index].error = err
        if results[index].done(policy) and on_done is not None:
            on_done(index)

    for index, run in enumerate(runners):
        def warm(run=run) -> None:
            for _ in range(policy.warmup):
                run()
        if pause:
            sleep(pause)
        try:
            warm()
        except Exception as err:
            results[index].error = err
            if on_done is not None:
                on_done(index)
    while True:
        pending = [i for i, samples in enumerate(results) if not samples.done(policy)]
        if not pending:
            return results
        for index in pending:
            if pause:
                sleep(pause)
            guarded(index, lambda index=index: _turn(runners[index], results[index], policy, clock))


@dataclass(frozen=True)
class Summary:
    """Latency statistics of one row.

    Attributes:
        runs: timed runs.
        total_s: their total time.
        min_ms: the fastest run.
        p50_ms, p90_ms, p99_ms: percentiles of one run's latency (linear interpolation
            between samples, NumPy's default; with few runs p99 is close to the slowest).
        images_per_s: images of all timed runs / their total time (``batch`` images a run).
    """

    runs: int
    total_s: float
    min_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float


def summarize(durations: Sequence[float], *, batch: int) -> Summary:
    """Percentiles and throughput of ``durations`` (seconds per run of ``batch`` images).

    Raises:
        TsegError: no durations.
    """
    if not durations:
        raise TsegError("no timed runs to summarise")
    values = np.asarray(durations, dtype=np.float64)
    p50, p90, p99 = (float(v) * 1e3 for v in np.percentile(values, [50, 90, 99]))
    total = math.fsum(durations)
    rate = batch * len(durations) / total if total > 0 else float("inf")
    return Summary(len(durations), total, float(values.min()) * 1e3, p50, p90, p99, rate)
