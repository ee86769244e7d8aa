"""Dense CRF: tseg (Numba) against pydensecrf2 (C++), same inputs, one process.

    python benchmarks/crf.py              # issue 19's goals 1-3: user calls, probs -> labels
    python benchmarks/crf.py --kernels    # build + inference split, first call, memory
    python benchmarks/crf.py --parity     # agreement and max |dQ| on every live parity case
    python benchmarks/crf.py --kernels --repeat 9 --threads 2

The default table (benchmarks/crf_goals.py) times whole user calls, probabilities to
labels, as issue 19's goals state them, with PASS or FAIL against each target.
--kernels times, as medians of --repeat runs with the JIT warm, build = lattices (and
their normalisation), inference = the mean-field iterations. The machine may be shared and
noisy: tseg and pydensecrf2 runs alternate, so their ratio is fair even when the
absolute times drift. Needs ``pip install pydensecrf2 matplotlib``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crf_goals  # noqa: E402
import crf_scaling  # noqa: E402
import make_crf_reference as ref  # noqa: E402

SPEED_CASES = [
    ref.Case("512x512, 12 labels, 5 it", "photo", 512, 512, 12, 5),
    ref.Case("256x256, 12 labels, 10 it", "photo", 256, 256, 12, 10),
    ref.Case("512x512, 12 labels, 10 it, DeepLab", "photo", 512, 512, 12, 10,
             dict(ref.DEEPLAB)),
]


def time_tseg(image, unary, settings, iterations, threads, cold=True):
    """(Q, build s, inference s). cold: forget cached Gaussian lattices first, so the
    build includes both lattices as pydensecrf's does."""
    from tseg.runtime.crf import DenseCRF, dense

    if cold:
        dense._gaussian_cache.clear()
    t0 = time.perf_counter()
    crf = DenseCRF(image, threads=threads, **settings)
    t1 = time.perf_counter()
    q = crf.inference(unary, iterations=iterations)
    t2 = time.perf_counter()
    return q, t1 - t0, t2 - t1


def time_reference(image, unary, settings, iterations):
    import pydensecrf.densecrf as dcrf

    height, width = image.shape[:2]
    num_classes = unary.shape[0]
    rgb = np.array(image, order="C")
    u = np.ascontiguousarray(unary.reshape(num_classes, -1), np.float32)
    t0 = time.perf_counter()
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(u)
    crf.addPairwiseGaussian(sxy=settings["gaussian_sxy"], compat=settings["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=settings["bilateral_sxy"], srgb=settings["bilateral_srgb"],
                             rgbim=rgb, compat=settings["bilateral_compat"])
    t1 = time.perf_counter()
    q = np.array(crf.inference(iterations), np.float32).reshape(num_classes, height, width)
    t2 = time.perf_counter()
    return q, t1 - t0, t2 - t1


def _timed(fn, *args):
    """fn's result with its CPU seconds (all threads of the process) appended."""
    cpu = time.process_time()
    *out, build, infer = fn(*args)
    return (*out, build, infer, time.process_time() - cpu)


def speed(case, repeat, threads):
    """Median times of tseg and pydensecrf2, alternating runs on the same inputs."""
    from tseg.runtime.crf import unary_from_probs

    image, probs, settings = ref.make_inputs(case)
    unary = unary_from_probs(probs)
    time_tseg(image, unary, settings, case.iterations, threads)  # JIT warm
    runs = {"pydensecrf2": [], "tseg": [], "tseg, Gaussian lattice cached": []}
    for _ in range(repeat):
        q, *t = _timed(time_tseg, image, unary, settings, case.iterations, threads)
        runs["tseg"].append(t)
        q_ref, *t = _timed(time_reference, image, unary, settings, case.iterations)
        runs["pydensecrf2"].append(t)
        _, *t = _timed(time_tseg, image, unary, settings, case.iterations, threads, False)
        runs["tseg, Gaussian lattice cached"].append(t)
    label = "all cores" if threads is None else f"{threads} thread{'s' * (threads > 1)}"
    print(f"{case.name}, tseg on {label}: median of {repeat} (wall ms: total = build + "
          f"inference; CPU ms of all threads)")
    base = [sum(t[:2]) for t in runs["pydensecrf2"]]
    for name, times in runs.items():
        build, infer, cpu = (statistics.median(t[i] for t in times) for i in range(3))
        paired = statistics.median(b / sum(t[:2]) for b, t in zip(base, times, strict=True))
        print(f"  {name:30s} {(build + infer) * 1e3:6.0f} = {build * 1e3:4.0f} + "
              f"{infer * 1e3:4.0f} | CPU {cpu * 1e3:6.0f} | pydensecrf2 / this: "
              f"{paired:.2f}x wall")
    print(f"  labels agree {(q.argmax(0) == q_ref.argmax(0)).mean():.5f}, "
          f"max|dQ| {np.abs(q - q_ref).max():.1e}")


_FIRST_CALL = """
import time
t0 = time.perf_counter()
from tseg.runtime.crf import DenseCRF, unary_from_probs
import numpy as np
t1 = time.perf_counter()
d = np.load({path!r})
def once():
    s = time.perf_counter()
    DenseCRF(d["image"]).inference(unary_from_probs(d["probs"]), iterations=5)
    return time.perf_counter() - s
first = once()
warm = sorted(once() for _ in range(5))[2]
print(t1 - t0, first, warm)
"""


def first_call(tmp: Path) -> None:
    """Import + first call in a fresh process (warm Numba cache) vs a warm call."""
    image, probs, _ = ref.make_inputs(SPEED_CASES[0])
    path = tmp / "crf_first_call.npz"
    np.savez(path, image=image, probs=probs)
    code = _FIRST_CALL.format(path=str(path))
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)  # fill cache
    runs = [list(map(float, subprocess.run([sys.executable, "-c", code], check=True,
                                           capture_output=True, text=True).stdout.split()))
            for _ in range(3)]
    imp, first, warm = (statistics.median(r[i] for r in runs) for i in range(3))
    print(f"fresh process, warm cache (512/5 it, median of 3 processes): import "
          f"{imp:.2f} s, first call {first:.2f} s, warm call {warm:.2f} s -> extra on the "
          f"first call {first - warm:.2f} s (with the import {imp + first - warm:.2f} s)")


_MEMORY = """
import resource, sys, threading, time, numpy as np
sys.path.insert(0, {bench!r})
import crf as bench
from tseg.runtime.crf import unary_from_probs
d = np.load({path!r})
image, unary = d["image"], unary_from_probs(d["probs"])
settings = dict(bench.ref.DEFAULT)
def run(im, u):
    if {which!r} == "tseg":
        return bench.time_tseg(im, u, settings, 5, None)
    return bench.time_reference(im, u, settings, 5)
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20
run(image[:16, :16].copy(), unary[:, :16, :16].copy())  # JIT code and pools loaded
before, peak, done = rss(), [0.0], threading.Event()
def sample():
    while not done.is_set():
        peak[0] = max(peak[0], rss())
        time.sleep(0.001)
sampler = threading.Thread(target=sample)
sampler.start()
run(image, unary)
done.set()
sampler.join()
print(before, max(peak[0], rss()))
"""


def memory(tmp: Path) -> None:
    """Peak RSS of the first full-size call above the RSS before it (sampled every ms
    by a thread; a 16 x 16 call first loads the JIT code), one fresh process per
    implementation. RSS sees C++ allocations, which tracemalloc would not."""
    image, probs, _ = ref.make_inputs(SPEED_CASES[0])
    path = tmp / "crf_memory.npz"
    np.savez(path, image=image, probs=probs)
    bench = str(Path(__file__).resolve().parent)
    for which in ("pydensecrf2", "tseg"):
        code = _MEMORY.format(path=str(path), bench=bench, which=which)
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                             text=True).stdout.split()
        before, peak = map(float, out)
        print(f"peak memory {which} (512/5 it): {peak - before:.0f} MiB above the "
              f"{before:.0f} MiB resident before the call (RSS sampled every ms)")


def parity() -> None:
    from tseg.runtime.crf import DenseCRF, unary_from_labels, unary_from_probs

    for case in ref.LIVE:
        image, data, settings = ref.make_inputs(case)
        unary_ref = ref.reference_unary(data, case.num_classes, case.hard_labels)
        q_ref = ref.reference_q(image, unary_ref, settings, case.iterations)
        unary = (unary_from_labels(data, num_classes=case.num_classes, gt_prob=0.7)
                 if case.hard_labels else unary_from_probs(data))
        q = DenseCRF(image, **settings).inference(unary, iterations=case.iterations)
        changed = (q.argmax(0) != unary.argmin(0)).mean()
        print(json.dumps({"case": case.name, "agree": round(float(
            (q.argmax(0) == q_ref.argmax(0)).mean()), 6), "max_abs_dq": float(
            f"{np.abs(q - q_ref).max():.2e}"), "labels_changed_by_crf": round(
            float(changed), 4)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--threads", type=int, action="append",
                        help="tseg threads (repeatable); default: the goals' (1 and 2), "
                             "--kernels: 1 and all cores")
    parser.add_argument("--parity", action="store_true", help="only the parity table")
    parser.add_argument("--scaling", action="store_true",
                        help="goal 5: the goals' cases on 1 thread up to every core")
    parser.add_argument("--kernels", action="store_true",
                        help="the kernels' table (build + inference from a ready unary), "
                             "first call and memory, instead of the goals")
    args = parser.parse_args()
    if args.parity:
        parity()
        return
    if args.scaling:
        crf_scaling.print_scaling(args.repeat)
        return
    if not args.kernels:
        crf_goals.print_goals(args.repeat, args.threads)
        return
    import tempfile

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    for case in SPEED_CASES:
        for threads in args.threads or [None, 1]:
            speed(case, args.repeat, threads)
    with tempfile.TemporaryDirectory() as tmp:
        first_call(Path(tmp))
        memory(Path(tmp))
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
