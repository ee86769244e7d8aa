"""Issue 19's goal 5: how the dense CRF scales with cores.

For each goal case (benchmarks/crf_goals.py) and each thread count from 1 up to every
core this process may use (doubling), the median time of ``labels_from_probs`` (both
lattices built, as a user's call) and its speed-up over one thread; beside it, on the
same thread counts, the fused pixel pass alone (one thread per splat task, the pass
before the two-phase one of runtime/crf/split.py), alternating with it. Both give the
same labels (checked). Run on a many-core machine: ``python benchmarks/crf.py --scaling``.
"""

from __future__ import annotations

import os
import statistics
import time

import crf_goals
import make_crf_reference as ref
import numpy as np


def _thread_counts() -> list[int]:
    from tseg.runtime.crf.parallel import available_threads

    cores = available_threads()
    counts = [1]
    while counts[-1] * 2 <= cores:
        counts.append(counts[-1] * 2)
    return counts if counts[-1] == cores else [*counts, cores]


def _timed(image, probs, settings, iterations, threads, two_phase: bool) -> tuple[float, np.ndarray]:
    from tseg.runtime.crf import dense, labels_from_probs, split

    usual = split.SPLIT_THREADS_PER_TASK
    split.SPLIT_THREADS_PER_TASK = usual if two_phase else 2**62  # never: the fused pass
    try:
        dense._gaussian_cache.clear()
        start = time.perf_counter()
        labels = labels_from_probs(probs, image, iterations=iterations, threads=threads,
                                   **settings)
        return time.perf_counter() - start, labels
    finally:
        split.SPLIT_THREADS_PER_TASK = usual


def print_scaling(repeat: int) -> None:
    """The table: per case and thread count, ms and speed-up, two-phase and fused."""
    counts = _thread_counts()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
          f"({counts[-1]} usable); medians of {repeat} runs")
    print("| case | threads | ms | speed-up over 1 thread | fused pass only: ms | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for goal in crf_goals.GOALS:
        image, probs, settings = ref.make_inputs(goal.case)
        base = None
        for threads in counts:
            times = {True: [], False: []}
            labels = {}
            _timed(image, probs, settings, goal.case.iterations, threads, True)  # warm-up (compilation, pool)
            for _ in range(repeat):
                for two_phase in (True, False):
                    seconds, labels[two_phase] = _timed(image, probs, settings,
                                                        goal.case.iterations, threads, two_phase)
                    times[two_phase].append(seconds)
            if not np.array_equal(labels[True], labels[False]):
                raise SystemExit(f"{goal.case.name}, {threads} threads: the two passes differ")
            ms = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            base = base or ms
            print(f"| {goal.case.name} | {threads} | {ms[True]:.1f} | {base[True] / ms[True]:.2f}x "
                  f"| {ms[False]:.1f} | {base[False] / ms[False]:.2f}x |", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
