"""tseg-infer's pipeline against the bare ONNX Runtime session, side by side in one run.

    python benchmarks/infer.py                      # 120 JPEGs, 3 alternating repeats
    python benchmarks/infer.py --images 60 --repeats 2 --no-crf

The model is deeplabv3_mobilenet_v3_large (12 classes, random weights: the speed does not
depend on them) exported by tseg.export at input 512, and the images synthetic 512x512
"photos" (smooth background, coloured shapes, sensor noise) saved as JPEG; both are cached
under build/bench_infer/. Four ways, each repeat running them in turn (so a noisy, shared
machine slows all of them alike), figures are the median over repeats:

    (a) session        ONNX Runtime alone on pre-decoded, preprocessed batches (the ceiling),
                       from opening the model file, as (b) does
    (b) pipeline       tseg-infer's pipeline in-process: JPEGs on disk -> label PNGs written
    (c) sequential+crf the same stages one after the other (--workers 0), with the dense CRF
    (d) pipeline+crf   the pipeline with the dense CRF

Printed: images/s of each, and the ratios b/a (target >= 0.9) and d/c (target >= 1.1).
Timing: wall clock (time.perf_counter) around each whole run, each from opening the model file
(one untimed warm-up run of each first: page cache, Numba cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "bench_infer"
MODEL = "deeplabv3_mobilenet_v3_large"
SIZE = 512
NUM_CLASSES = 12


def build_model(path: Path) -> Path:
    """deeplabv3_mobilenet_v3_large, random init, exported at input 512 (cached)."""
    if path.is_file():
        return path
    import torch

    from tseg.export.onnx import export_onnx
    from tseg.train.checkpoints import ModelSpec

    torch.manual_seed(0)
    spec = ModelSpec(
        name=MODEL,
        kwargs={"num_classes": NUM_CLASSES},
        classes=("Background", *(f"class{i}" for i in range(1, NUM_CLASSES))),
        palette=tuple((17 * i, 255 - 17 * i, (97 * i) % 256) for i in range(NUM_CLASSES)),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=(SIZE, SIZE),
    )
    return export_onnx(spec.build().eval(), spec, path)


def synthetic_photo(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8: a smooth background, a few coloured shapes, sensor noise."""
    from PIL import Image, ImageDraw

    coarse = rng.uniform(40, 220, size=(4, 4, 3)).astype(np.uint8)
    picture = Image.fromarray(coarse).resize((size, size), Image.BICUBIC)
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = rng.integers(0, size - 40, size=2)
        w, h = rng.integers(30, size // 2, size=2)
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        box = (int(x0), int(y0), int(min(size, x0 + w)), int(min(size, y0 + h)))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    noisy = np.asarray(picture, np.float32) + rng.normal(0, 6, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def build_images(folder: Path, count: int) -> list[Path]:
    """``count`` synthetic JPEGs (quality 90), cached."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for index in range(count):
        path = folder / f"{index:05d}.jpg"
        photo = synthetic_photo(rng)
        if not path.is_file():
            Image.fromarray(photo).save(path, quality=90)
        paths.append(path)
    return paths


def session_rate(model: Path, paths: list[Path], batch_size: int, threads: int | None):
    """(a): returns a callable that runs the session over pre-decoded, preprocessed batches."""
    from tseg.runtime.images import read_image
    from tseg.runtime.model.session import create_session
    from tseg.runtime.segment.segmenter import Segmenter

    segmenter = Segmenter(model, device="cpu", threads=threads)
    tensors = np.stack([segmenter.preprocess(read_image(p)) for p in paths])
    batches = [tensors[i : i + batch_size] for i in range(0, len(tensors), batch_size)]

    def run() -> None:
        # From the model file, as tseg-infer starts: opening the session and its first,
        # slower runs (memory arena growth) count for both; pre-decoded inputs only here.
        session = create_session(model, device="cpu", threads=threads)
        name = session.get_inputs()[0].name
        for batch in batches:
            session.run(None, {name: batch})

    return run


def pipeline_run(model: Path, folder: Path, out: Path, *, crf: bool, workers: int, batch_size: int, threads,
                 post_workers: int | None = None):
    """(b), (c), (d): tseg-infer's work in-process (what the CLI calls)."""
    from tseg.runtime.infer.run import InferSettings, infer_paths
    from tseg.runtime.segment.refine import CrfParams

    settings = InferSettings(
        model=model,
        out=out,
        device="cpu",
        threads=threads,
        progress=False,
        crf=CrfParams() if crf else None,
        batch_size=batch_size,
        workers=workers,
        post_workers=post_workers,
    )

    def run() -> None:
        result = infer_paths([folder], settings=settings)
        if result.failures:
            raise RuntimeError(f"{len(result.failures)} images failed: {result.failures[0].line()}")

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--post-workers", type=int, default=None, help="post threads (default: tseg-infer's)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: ORT's)")
    parser.add_argument("--no-crf", action="store_true", help="only (a) and (b)")
    args = parser.parse_args(argv)

    model = build_model(CACHE / f"{MODEL}_{SIZE}.onnx")
    folder = CACHE / f"images_{args.images}"
    paths = build_images(folder, args.images)
    work = Path(tempfile.mkdtemp(prefix="tseg-bench-infer-"))
    common = dict(workers=args.workers, batch_size=args.batch_size, threads=args.threads)
    common["post_workers"] = args.post_workers
    ways = {"session": session_rate(model, paths, args.batch_size, args.threads)}
    ways["pipeline"] = pipeline_run(model, folder, work / "b", crf=False, **common)
    if not args.no_crf:
        ways["sequential+crf"] = pipeline_run(model, folder, work / "c", crf=True, **{**common, "workers": 0})
        ways["pipeline+crf"] = pipeline_run(model, folder, work / "d", crf=True, **common)
    print(f"{len(paths)} JPEGs {SIZE}x{SIZE}, {MODEL} at {SIZE}, batch {args.batch_size}, workers {args.workers},"
          f" {os.cpu_count()} CPUs; {args.repeats} alternating repeats after a warm-up", flush=True)
    rates: dict[str, list[float]] = {name: [] for name in ways}
    try:
        for run in ways.values():
            run()  # warm-up: sessions, Numba's compiled kernels, the page cache
        for repeat in range(args.repeats):
            for name, run in ways.items():
                start = time.perf_counter()
                run()
                rates[name].append(len(paths) / (time.perf_counter() - start))
            print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {r[-1]:.1f}" for n, r in rates.items()), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in median.items():
        print(f"{name:>15}: {value:7.1f} images/s (median of {args.repeats})")
    # The ratio of each repeat (its runs ran back to back, under the same load), then their median.
    pairs = [("pipeline", "session", 0.9)] + ([] if args.no_crf else [("pipeline+crf", "sequential+crf", 1.1)])
    for top, bottom, target in pairs:
        ratios = [t / b for t, b in zip(rates[top], rates[bottom], strict=True)]
        shown = ", ".join(f"{r:.2f}" for r in ratios)
        print(f"{top} / {bottom}: {statistics.median(ratios):.2f}x (target >= {target}; per repeat {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
