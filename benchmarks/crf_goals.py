"""Issue 19's goals 1-3: the CRF as a user calls it, tseg against pydensecrf2.

Each timed run is one user call from probabilities to labels, lattice build included:

- tseg: ``labels_from_probs(probs, image, threads=t)``, its public call from
  probabilities to labels (the labels from the last pass, Q never written); the
  Gaussian lattice cache is cleared before every run, so both lattices are built as
  pydensecrf2 builds them (a second column shows the cached run, what a stream of
  same-size photos pays);
- pydensecrf2: ``unary_from_softmax(probs)`` (-log(clip(p, 1e-5))), ``DenseCRF2D``,
  ``addPairwiseGaussian`` and ``addPairwiseBilateral`` with the same parameters,
  ``inference``, the argmax over labels.

Beside it: the same with the Gaussian lattice cached, ``dense_crf`` (Q) and the caller's
argmax (``argmax_classes``), tseg's runtime entry ``labels_from_logits`` on log(probs)
(both lattices built), and the ratio of CPU times
(all threads of the process: on a busy machine the fairer figure for one thread).
tseg and pydensecrf2 alternate on the same photograph (grace_hopper.jpg, 12 classes,
benchmarks/make_crf_reference.py's smooth random probabilities), medians of --repeat
runs; the ratio is pydensecrf2's median over tseg's. The load average is printed with
every table: the machine may be shared.
"""

from __future__ import annotations

import os
import statistics
import time
from dataclasses import dataclass, field

import make_crf_reference as ref
import numpy as np


@dataclass(frozen=True)
class Goal:
    """One goal of issue 19: a case and the speed-up over pydensecrf2 it asks for."""

    number: int
    case: ref.Case
    # threads -> the least speed-up (pydensecrf2's time / tseg's) that passes
    targets: dict = field(default_factory=dict)


GOALS = [
    Goal(1, ref.Case("512x512, 5 it, default", "photo", 512, 512, 12, 5), {2: 8.0, 1: 4.0}),
    Goal(2, ref.Case("512x512, 10 it, DeepLab", "photo", 512, 512, 12, 10, dict(ref.DEEPLAB)),
         {2: 4.0}),
    Goal(3, ref.Case("256x256, 10 it, default", "photo", 256, 256, 12, 10), {2: 6.0}),
]


def tseg_labels(image, probs, settings, iterations, threads, cold=True):
    """tseg's user call: probabilities to labels (cold: both lattices built)."""
    from tseg.runtime.crf import dense

    try:
        from tseg.runtime.crf import labels_from_probs
    except ImportError:  # a tseg before labels_from_probs (a baseline run)
        return tseg_q_labels(image, probs, settings, iterations, threads, cold)
    if cold:
        dense._gaussian_cache.clear()
    return labels_from_probs(probs, image, iterations=iterations, threads=threads, **settings)


def tseg_q_labels(image, probs, settings, iterations, threads, cold=True):
    """dense_crf's Q, then the caller's argmax (cold: both lattices built)."""
    from tseg.runtime.crf import dense, dense_crf
    from tseg.runtime.scores import argmax_classes

    if cold:
        dense._gaussian_cache.clear()
    return argmax_classes(dense_crf(probs, image, iterations=iterations, threads=threads,
                                    **settings))


def tseg_logits_labels(image, logits, settings, iterations, threads):
    """tseg's runtime entry: logits to labels (labels_from_logits), both lattices built."""
    from tseg.runtime.crf import dense, labels_from_logits

    dense._gaussian_cache.clear()
    return labels_from_logits(logits, image, iterations=iterations, threads=threads, **settings)


def reference_labels(image, probs, settings, iterations):
    """pydensecrf2's user call: probabilities to labels."""
    from pydensecrf.utils import unary_from_softmax

    return ref.reference_q(image, unary_from_softmax(probs), settings, iterations).argmax(0)


def _seconds(fn, *args, **kwargs):
    """fn's result, its wall seconds and the process's CPU seconds (all threads)."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start, time.process_time() - cpu


def measure(goal: Goal, threads: int, repeat: int) -> dict:
    """Medians (s) of alternating runs, the labels' agreement and the speed-ups."""
    image, probs, settings = ref.make_inputs(goal.case)
    logits = np.log(probs)  # a softmax of these is probs again, to float rounding
    it = goal.case.iterations
    tseg_labels(image, probs, settings, it, threads)  # JIT and pool warm
    try:
        tseg_logits_labels(image, logits, settings, it, threads)
    except ImportError:  # a tseg before labels_from_logits (a baseline run)
        logits = None
    runs = {"tseg": [], "reference": [], "cached": [], "q": [], "logits": []}
    for _ in range(repeat):
        labels, *t = _seconds(tseg_labels, image, probs, settings, it, threads)
        runs["tseg"].append(t)
        expected, *t = _seconds(reference_labels, image, probs, settings, it)
        runs["reference"].append(t)
        _, *t = _seconds(tseg_labels, image, probs, settings, it, threads, cold=False)
        runs["cached"].append(t)
        q_labels, *t = _seconds(tseg_q_labels, image, probs, settings, it, threads)
        runs["q"].append(t)
        if logits is not None:
            from_logits, *t = _seconds(tseg_logits_labels, image, logits, settings, it, threads)
            runs["logits"].append(t)
    out = {name: statistics.median(w for w, _ in times) if times else float("nan")
           for name, times in runs.items()}
    cpu = {name: statistics.median(c for _, c in times) if times else float("nan")
           for name, times in runs.items()}
    out.update(speedup=out["reference"] / out["tseg"], parallel=cpu["tseg"] / out["tseg"],
               cpu_speedup=cpu["reference"] / cpu["tseg"],
               agree=float(min((labels == expected).mean(), (q_labels == expected).mean())),
               logits_agree=float((from_logits == expected).mean()) if logits is not None
               else float("nan"))
    return out


def print_goals(repeat: int, threads_list: list[int] | None = None) -> bool:
    """Measure and print goals 1-3; True when every measured target passes."""
    print(f"Issue 19 goals 1-3: probabilities -> labels through the public API, lattice "
          f"build included, photograph, 12 classes, medians of {repeat} alternating runs "
          f"(load average before {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs)")
    print("| goal | case | threads | pydensecrf2 | tseg | speed-up | target | tseg, Gaussian "
          "cached | tseg, dense_crf + argmax | tseg, logits -> labels | CPU-time speed-up "
          "| tseg CPU / wall | labels agree | load |")
    print("| --- | --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: "
          "| ---: | ---: |")
    passed = True
    for goal in GOALS:
        for threads, target in sorted(goal.targets.items(), reverse=True):
            if threads_list and threads not in threads_list:
                continue
            r = measure(goal, threads, repeat)
            ok = r["speedup"] >= target
            passed &= ok
            print(f"| {goal.number} | {goal.case.name} | {threads} | {r['reference'] * 1e3:.0f} ms "
                  f"| {r['tseg'] * 1e3:.1f} ms | **{r['speedup']:.2f}x** "
                  f"| >= {target:g}x {'PASS' if ok else 'FAIL'} | {r['cached'] * 1e3:.1f} ms "
                  f"| {r['q'] * 1e3:.1f} ms | {r['logits'] * 1e3:.1f} ms "
                  f"| {r['cpu_speedup']:.2f}x | {r['parallel']:.2f} "
                  f"| {r['agree'] * 100:.3f}% / {r['logits_agree'] * 100:.3f}% "
                  f"| {os.getloadavg()[0]:.2f} |", flush=True)
    print("tseg: labels_from_probs. labels agree: tseg's labels (from probabilities, the "
          "worse of labels_from_probs and dense_crf's argmax / from logits) against "
          "pydensecrf2's. tseg CPU / wall: the cores tseg kept busy (near 1.0 on 2 threads: "
          "another process held the second core; Linux shares CPU time between sessions)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return passed
