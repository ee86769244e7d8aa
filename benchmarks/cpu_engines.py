"""ONNX Runtime vs OpenVINO on this CPU, on the files tseg-export writes, side by side (issue 20).

    python benchmarks/cpu_engines.py [--models a,b] [--size 512] [--batches 1,8] [--repeats 5] [--images 16]

For each model (random init, BatchNorm settled, exported and INT8-quantized as
benchmarks/precisions.py does, files cached under build/bench_precisions/), each file (FP32,
INT8) and batch size, three ways take turns in every repeat, 2 threads each:

- ``ort``: tseg's ONNX Runtime session on the CPU, one batch of preprocessed input;
- ``ov``: OpenVINO bare, its own infer request on the same file and input (f32; ``ov-bf16``:
  the FP32 file in bfloat16, where the CPU has it);
- ``pipeline``: ``tseg-infer --device openvino`` (the Python API, ``infer_paths``) over
  ``--images`` JPEGs of the model's size, decoding to PNGs written, against ``ov-images``:
  OpenVINO bare over the same images, pre-decoded and preprocessed, in batches (both open the
  model from its file, as tseg-infer starts): images/s, target >= 0.9x.

Also printed per model: the fastest precision that OpenVINO runs (bf16 or INT8) against ONNX
Runtime's FP32 (target >= 1.8x). Medians over repeats; the machine's load is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import precisions as zoo  # noqa: E402 (the shared model files: benchmarks/precisions.py)

THREADS = 2
PIPELINE_TARGET = 0.9
SPEEDUP_TARGET = 1.8


def _batch(size: int, batch: int) -> np.ndarray:
    images = list(zoo.calibration(size, batch))
    return np.ascontiguousarray(np.stack(images))


def _ort(path: Path, x: np.ndarray) -> Callable[[], object]:
    from tseg.runtime.model.session import create_session

    session = create_session(path, device="cpu", threads=THREADS)
    feed = {session.get_inputs()[0].name: x}
    return lambda: session.run(None, feed)


def _ov(path: Path, x: np.ndarray, *, bf16: bool) -> Callable[[], object]:
    from tseg.runtime.model.openvino import OpenVinoSession, OpenVinoSettings

    # Compiled as tseg compiles it (precision, threads, one stream), then OpenVINO's own request.
    session = OpenVinoSession(path, threads=THREADS, settings=OpenVinoSettings(bf16=bf16))
    request = session.compiled.create_infer_request()
    return lambda: request.infer({0: x})


def _write_jpegs(folder: Path, size: int, count: int) -> None:
    from PIL import Image

    rng = np.random.default_rng(3)
    for i in range(count):
        Image.fromarray(zoo.synthetic_image(rng, size)).save(folder / f"{i:03d}.jpg", quality=90)


def _pipeline(path: Path, photos: Path, out: Path, batch: int) -> Callable[[], float]:
    """One tseg-infer --device openvino run over the photos; returns its seconds per image."""
    from tseg.runtime.infer.run import InferSettings, infer_paths

    count = len(list(photos.glob("*.jpg")))

    def run() -> float:
        settings = InferSettings(model=path, out=out / f"run{time.monotonic_ns()}", device="openvino",
                                 threads=THREADS, progress=False, batch_size=batch)
        start = time.perf_counter()
        infer_paths([photos], settings=settings)
        return (time.perf_counter() - start) / count
    return run


def _ov_images(path: Path, photos: Path, batch: int) -> Callable[[], float]:
    """OpenVINO bare over the pipeline's images, pre-decoded; returns its seconds per image."""
    from tseg.runtime.images import read_image
    from tseg.runtime.model.session import create_session
    from tseg.runtime.segment.segmenter import Segmenter

    segmenter = Segmenter(path, device="openvino", threads=THREADS)
    tensors = np.stack([segmenter.preprocess(read_image(p)) for p in sorted(photos.glob("*.jpg"))])
    batches = [tensors[i : i + batch] for i in range(0, len(tensors), batch)]

    def run() -> float:
        start = time.perf_counter()
        session = create_session(path, device="openvino", threads=THREADS)  # as tseg-infer starts
        name = session.get_inputs()[0].name
        for x in batches:
            session.run(None, {name: x})
        return (time.perf_counter() - start) / len(tensors)
    return run


def _timed(run: Callable[[], object], batch: int) -> float:
    """Seconds per image of one batch run."""
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / batch


def bench_file(path: Path, size: int, batch: int, *, repeats: int, photos: Path, out: Path,
               bf16: bool) -> dict[str, float]:
    """Median ms per image of each way, taking turns."""
    x = _batch(size, batch)
    batch_runs = {"ort": _ort(path, x), "ov": _ov(path, x, bf16=False)}
    if bf16:
        batch_runs["ov-bf16"] = _ov(path, x, bf16=True)
    ways: dict[str, Callable[[], float]] = {
        key: (lambda run=run: _timed(run, batch)) for key, run in batch_runs.items()
    }
    ways["ov-images"] = _ov_images(path, photos, batch)
    ways["pipeline"] = _pipeline(path, photos, out, batch)
    for way in ways.values():
        way()  # warm-up: first runs plan memory, pick kernels, fill caches
    times: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(repeats):
        for key, way in ways.items():
            time.sleep(zoo.PAUSE_S)
            times[key].append(way())
    return {key: 1000 * statistics.median(values) for key, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(zoo.MODELS), help="comma-separated registry names")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--images", type=int, default=16, help="JPEGs the pipeline segments per run")
    args = parser.parse_args(argv)
    from tseg.runtime.model.openvino import check_bf16

    try:
        check_bf16()
        bf16 = True
    except Exception as err:  # no BF16 on this CPU: its rows are left out, and said so
        print(f"no bf16 rows: {err}")
        bf16 = False
    batches = [int(b) for b in args.batches.split(",")]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; {THREADS} threads everywhere; "
          f"median ms/img of {args.repeats} alternating repeats")
    print(f"{'model':>30} {'file':>5} {'batch':>5} {'ort':>8} {'ov':>8} {'ov-bf16':>8} {'ov-images':>9} "
          f"{'pipeline':>9} {'pipe/ov':>8}")
    missed = []
    with tempfile.TemporaryDirectory(prefix="tseg-bench-ov-") as work:
        photos, out = Path(work) / "photos", Path(work) / "out"
        photos.mkdir()
        _write_jpegs(photos, args.size, args.images)
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            fp32, int8 = zoo.build_files(name, args.size)
            best: dict[int, tuple[float, float]] = {}  # batch -> (ORT FP32, fastest OpenVINO gated)
            for label, path in (("fp32", fp32), ("int8", int8)):
                for batch in batches:
                    ms = bench_file(path, args.size, batch, repeats=args.repeats, photos=photos, out=out,
                                    bf16=bf16 and label == "fp32")
                    ratio = ms["ov-images"] / ms["pipeline"]
                    missed += [f"{name} {label} b{batch} pipeline {ratio:.2f}x"] if ratio < PIPELINE_TARGET else []
                    bf = f"{ms['ov-bf16']:8.1f}" if "ov-bf16" in ms else f"{'-':>8}"
                    print(f"{name:>30} {label:>5} {batch:>5} {ms['ort']:8.1f} {ms['ov']:8.1f} {bf} "
                          f"{ms['ov-images']:9.1f} {ms['pipeline']:9.1f} {ratio:7.2f}x", flush=True)
                    ort_fp32, fastest = best.get(batch, (None, float("inf")))
                    if label == "fp32":
                        ort_fp32 = ms["ort"]
                        fastest = min(fastest, ms.get("ov-bf16", float("inf")))
                    else:
                        fastest = min(fastest, ms["ov"])
                    best[batch] = (ort_fp32, fastest)
            for batch, (ort_fp32, fastest) in best.items():
                speedup = ort_fp32 / fastest
                verdict = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
                missed += [f"{name} b{batch} speed-up {speedup:.2f}x"] if speedup < SPEEDUP_TARGET else []
                print(f"{name:>30} batch {batch}: fastest gated precision through OpenVINO {speedup:.2f}x ORT FP32"
                      f" (target >= {SPEEDUP_TARGET}x: {verdict})")
    print("\nall targets met" if not missed else f"\ntargets not met: {'; '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
