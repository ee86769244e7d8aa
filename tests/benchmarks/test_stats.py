"""tseg-bench's timing on a fake clock: warm-up excluded, run-until, interleaving, percentiles."""

from __future__ import annotations

import pytest

from tseg.benchmarks.stats import TimingPolicy, interleave, summarize
from tseg.runtime.errors import TsegError


class FakeClock:
    """A clock that only moves when a fake run says so."""

    def __init__(self) -> None:
        self.now = 100.0
        self.log: list[str] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        """A pause: the clock moves, and the log shows it."""
        self.log.append(f"pause {seconds:g}")
        self.now += seconds

    def runner(self, name: str, durations: list[float]):
        """A run that takes durations[i] seconds on its i-th call (the last one repeats)."""
        calls = iter(range(10**6))

        def run() -> None:
            i = next(calls)
            self.log.append(name)
            self.now += durations[min(i, len(durations) - 1)]

        return run


def test_warmup_is_excluded_and_both_minimums_hold():
    clock = FakeClock()
    # 2 warm-up runs of 5 s (excluded), then 0.25 s runs: 4 runs reach min_runs, 1 s needs 4 -> 4 runs.
    policy = TimingPolicy(warmup=2, min_runs=4, min_time=1.0, turns=1)
    [samples] = interleave([clock.runner("a", [5.0, 5.0, 0.25])], policy=policy, clock=clock)
    assert samples.durations == [0.25] * 4
    # The minimum time dominates: 0.125 s runs need 8 of them for 1 s although 4 runs would do.
    clock = FakeClock()
    [samples] = interleave([clock.runner("a", [0.125])], policy=policy, clock=clock)
    assert samples.durations == [0.125] * 8
    # The minimum count dominates: 2 s runs pass 1 s at once but 4 runs are still needed.
    clock = FakeClock()
    [samples] = interleave([clock.runner("a", [2.0])], policy=TimingPolicy(warmup=0, min_runs=4, min_time=1.0, turns=1),
                           clock=clock)
    assert samples.durations == [2.0] * 4


def test_rows_take_turns_with_untimed_pauses():
    clock = FakeClock()
    policy = TimingPolicy(warmup=1, min_runs=4, min_time=0.0, turns=2, pause=0.5)
    a, b = clock.runner("a", [1.0]), clock.runner("b", [1.0])
    results = interleave([a, b], policy=policy, clock=clock, sleep=clock.sleep)
    # A pause before each warm-up and each turn; turns of ceil(4 / 2) = 2 runs each, alternating.
    p = "pause 0.5"
    assert clock.log == [p, "a", p, "b", p, "a", "a", p, "b", "b", p, "a", "a", p, "b", "b"]
    assert [r.durations for r in results] == [[1.0] * 4] * 2  # the pauses are not in the timings
    # One row alone has no other row's threads to wait for: no pauses.
    clock = FakeClock()
    interleave([clock.runner("a", [1.0])], policy=policy, clock=clock, sleep=clock.sleep)
    assert clock.log == ["a"] * 5


def test_a_failing_row_stops_alone():
    clock = FakeClock()
    calls = []

    def broken() -> None:
        calls.append(1)
        if len(calls) > 2:  # the warm-up passes, the first timed run fails
            raise RuntimeError("CUDA out of memory")
        clock.now += 1.0

    done = []
    results = interleave([broken, clock.runner("ok", [0.5])], policy=TimingPolicy(warmup=2, min_runs=3, min_time=0,
                         turns=1), clock=clock, sleep=clock.sleep, on_done=done.append)
    assert isinstance(results[0].error, RuntimeError) and results[0].durations == []
    assert results[1].error is None and results[1].durations == [0.5] * 3
    assert done == [0, 1]


def test_percentiles_and_throughput_are_exact():
    durations = [0.010, 0.020, 0.030, 0.040, 0.050, 0.060, 0.070, 0.080, 0.090, 0.100, 0.110]
    summary = summarize(durations, batch=8)
    assert summary.runs == 11
    assert summary.min_ms == pytest.approx(10.0)
    assert summary.p50_ms == pytest.approx(60.0)
    assert summary.p90_ms == pytest.approx(100.0)  # rank 0.9 * 10 = 9 -> the 10th value
    assert summary.p99_ms == pytest.approx(109.0)  # rank 9.9: 100 + 0.9 * 10
    assert summary.total_s == pytest.approx(0.66)
    assert summary.images_per_s == pytest.approx(8 * 11 / 0.66)


def test_bad_policies_and_no_runs_are_refused():
    with pytest.raises(TsegError, match="min_runs: need an integer >= 1"):
        TimingPolicy(min_runs=0)
    with pytest.raises(TsegError, match="min_time: need seconds"):
        TimingPolicy(min_time=-1)
    with pytest.raises(TsegError, match="pause: need seconds in 0..60"):
        TimingPolicy(pause=-0.1)
    with pytest.raises(TsegError, match="no timed runs"):
        summarize([], batch=1)


def test_a_row_is_judged_on_real_input_flops_and_flagged_when_slowed():
    from tseg.benchmarks.flops import FlopCount
    from tseg.benchmarks.measure import _fill
    from tseg.benchmarks.rows import Plan, Row

    row = Row("m.onnx", "m.onnx", "onnxruntime", "fp32", "cpu", (64, 64), 2)
    # 10 GFLOPs counted, 4 of them on real input; p50 0.1 s for 2 images -> 80 GFLOP/s; peak 160 -> 50%.
    plan = Plan(row, make=lambda: None, flops=lambda: FlopCount(10 * 10**9, effective=4 * 10**9))
    _fill(plan, summarize([0.1] * 9 + [0.02], batch=2), {("fp32", "cpu"): 160.0})
    assert row.gflops == 10 and row.effective_gflops == 4
    assert row.gflops_per_s == pytest.approx(80.0) and row.peak_fraction == pytest.approx(0.5)
    assert row.min_ms == pytest.approx(20.0)
    slowed, padding = row.notes
    assert padding.startswith("at 64x64: 60% of the 10.00 GFLOPs/img counted are convolution taps on zero padding")
    assert "p50 100 ms is 5x its fastest run (20.0 ms)" in slowed
    # Steady runs and no padding: no notes.
    steady = Row("m.onnx", "m.onnx", "onnxruntime", "fp32", "cpu", (64, 64), 1)
    _fill(Plan(steady, make=lambda: None, flops=lambda: FlopCount(10**9, effective=10**9)),
          summarize([0.01, 0.011, 0.012], batch=1), {("fp32", "cpu"): 100.0})
    assert steady.notes == [] and steady.gflops_per_s == pytest.approx(100.0 / 1.1, rel=1e-6)
