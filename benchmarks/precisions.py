"""PyTorch eager FP32 vs ONNX Runtime FP32 vs ONNX Runtime INT8, side by side, on this CPU.

    python benchmarks/precisions.py [--models a,b] [--repeats 5] [--size 512] [--profile]

Random-init models from tseg's registry, exported with tseg.export.onnx.export_onnx and
quantized with tseg.export.int8.quantize_int8 on 16 synthetic photos; the files are
cached under build/bench_precisions/. Batch 1, 2 threads everywhere (torch.set_num_threads,
ORT intra-op threads). The three runners take turns within each repeat, so a load change on
a shared machine hits them alike; the ratios are medians of the per-repeat ratios.
``--profile`` adds ORT's per-op-type time (ms/img) for FP32 and INT8.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / "build" / "bench_precisions"
MODELS = ("deeplabv3_mobilenet_v3_large", "deeplabv3_resnet50", "fcn8s_vgg16")
NUM_CLASSES = 21
THREADS = 2
CALIB_IMAGES = 16
# Between timed runs: the previous runner's idle threads (ORT's intra-op pool, PyTorch's OpenMP team)
# keep spinning for a while after a run and would take a core from the next one on a 2-core machine.
PAUSE_S = 0.25
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# (INT8 / ORT FP32, INT8 / PyTorch eager) speed-ups the issue asks for; None: faster is enough.
TARGETS = {"deeplabv3_resnet50": (2.0, 3.0), "fcn8s_vgg16": (2.0, 3.0), "deeplabv3_mobilenet_v3_large": (1.0, None)}


def spec_for(name: str, size: int):
    """A random-init model spec of ``name`` at ``size`` (21 classes, ImageNet normalisation)."""
    from tseg.train.checkpoints import ModelSpec

    return ModelSpec(
        name=name,
        kwargs={"num_classes": NUM_CLASSES},
        classes=("Background", *(f"class{i}" for i in range(1, NUM_CLASSES))),
        palette=tuple((12 * i, 255 - 12 * i, (97 * i) % 256) for i in range(NUM_CLASSES)),
        mean=MEAN,
        std=STD,
        input_size=(size, size),
    )


def build_torch(name: str, size: int):
    """The eval-mode PyTorch model (seed 0: the same weights each time), BatchNorm statistics settled.

    A random-init model's BatchNorm layers hold mean 0, variance 1, so activations shrink layer
    after layer into float32 denormals (MobileNetV3's logits: |x| < 0.07), on which PyTorch's
    kernels run 3-4x slower and int8 calibration sees nothing like a trained model. Statistics
    re-estimated on a few synthetic photos (cumulative average) give activations of a trained
    model's scale (logits std ~1), as a real checkpoint would.
    """
    import torch

    torch.manual_seed(0)
    model = spec_for(name, size).build()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # cumulative average over the batches below
        images = np.stack(list(calibration(size // 2, 4)))
        model.train()
        with torch.no_grad():
            for batch in np.split(images, 2):
                model(torch.from_numpy(batch))
    return model.eval()


def synthetic_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) uint8: a smooth background, a few coloured shapes, sensor noise."""
    from PIL import Image, ImageDraw

    picture = Image.fromarray(rng.uniform(40, 220, size=(4, 4, 3)).astype(np.uint8)).resize((size, size))
    draw = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, size=2))
        w, h = (int(v) for v in rng.integers(size // 16, size // 2, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x0, y0, x0 + w, y0 + h), fill=colour)
    noisy = np.asarray(picture, np.float32) + rng.normal(0, 6, size=(size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def calibration(size: int, count: int = CALIB_IMAGES):
    """``count`` synthetic images preprocessed as the runtime does, one at a time."""
    from tseg.runtime.images import preprocess

    rng = np.random.default_rng(1)
    return (preprocess(synthetic_image(rng, size), size=(size, size), mean=MEAN, std=STD) for _ in range(count))


def int8_key(fp32: Path) -> str:
    """Names the INT8 file after its source and the quantization settings: a change is never served from the cache."""
    from tseg.export import int8

    stat = fp32.stat()
    settings = (int8.DEFAULT_CALIB_METHOD, int8.DEFAULT_KEEP_FLOAT, int8.CPU_INT8, CALIB_IMAGES)
    text = repr((fp32.name, stat.st_size, stat.st_mtime_ns, settings))
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def build_files(name: str, size: int) -> tuple[Path, Path]:
    """(FP32 .onnx, INT8 .onnx) of ``name`` at ``size``, built once and cached."""
    from tseg.export import int8
    from tseg.export.onnx import export_onnx

    fp32 = CACHE / f"{name}_{size}.bn-settled.onnx"
    if not fp32.is_file():
        print(f"exporting {name} at {size} ...", flush=True)
        export_onnx(build_torch(name, size), spec_for(name, size), fp32)
    quantized = CACHE / f"{name}_{size}.int8-{int8_key(fp32)}.onnx"
    if not quantized.is_file():
        print(f"quantizing {name} ({CALIB_IMAGES} calibration images) ...", flush=True)
        start = time.perf_counter()
        int8.quantize_int8(fp32, quantized, calibration=calibration(size), method=int8.DEFAULT_CALIB_METHOD, props={})
        print(f"  {time.perf_counter() - start:.0f} s", flush=True)
    return fp32, quantized


def ort_session(path: Path, *, profile_dir: Path | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / path.stem)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runners(name: str, size: int) -> dict[str, Callable[[], object]]:
    """One call = one batch-1 inference, for each of the three ways."""
    import torch

    fp32, quantized = build_files(name, size)
    model = build_torch(name, size)
    image = np.ascontiguousarray(next(iter(calibration(size, 1)))[None])
    tensor = torch.from_numpy(image)
    sessions = {"ort_fp32": ort_session(fp32), "ort_int8": ort_session(quantized)}
    feed = {sessions["ort_fp32"].get_inputs()[0].name: image}

    def eager() -> object:
        with torch.inference_mode():
            return model(tensor)["out"]

    ways: dict[str, Callable[[], object]] = {"torch_fp32": eager}
    for key, session in sessions.items():
        ways[key] = lambda session=session: session.run(None, feed)
    return ways


def op_profile(path: Path, image: np.ndarray, runs: int = 3) -> dict[str, float]:
    """ms per image by op type, from ORT's profiler."""
    with tempfile.TemporaryDirectory(prefix="tseg-bench-prof-") as folder:
        session = ort_session(path, profile_dir=Path(folder))
        feed = {session.get_inputs()[0].name: image}
        session.run(None, feed)  # warm-up, profiled too: subtracted by taking the later runs only
        for _ in range(runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    per_run = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
    times: dict[str, float] = collections.Counter()
    nodes_per_run = len(per_run) // (runs + 1)
    for event in per_run[nodes_per_run:]:
        times[event["args"]["op_name"]] += event["dur"] / 1000 / runs
    return dict(times)


def print_profile(name: str, size: int) -> None:
    fp32, quantized = build_files(name, size)
    image = np.ascontiguousarray(next(iter(calibration(size, 1)))[None])
    a, b = op_profile(fp32, image), op_profile(quantized, image)
    print(f"\nORT per-op time, {name} at {size}, ms/img (one profiled run each; compare shares, not totals)")
    print(f"{'op type':>22} {'FP32':>8} {'INT8':>8}")
    for op in sorted(set(a) | set(b), key=lambda k: -(a.get(k, 0) + b.get(k, 0))):
        if a.get(op, 0) + b.get(op, 0) >= 0.05:
            print(f"{op:>22} {a.get(op, 0):8.2f} {b.get(op, 0):8.2f}")
    print(f"{'total':>22} {sum(a.values()):8.2f} {sum(b.values()):8.2f}")


def bench(name: str, size: int, repeats: int) -> bool:
    """Times the three ways in turns; prints ms/img and ratios. True when the targets are met."""
    ways = runners(name, size)
    for run in ways.values():
        run()  # warm-up: ORT's first run plans memory, PyTorch's picks kernels
    times: dict[str, list[float]] = {key: [] for key in ways}
    for _ in range(repeats):
        for key, run in ways.items():
            time.sleep(PAUSE_S)
            start = time.perf_counter()
            run()
            times[key].append(time.perf_counter() - start)
    print(f"\n{name} at {size}x{size}, batch 1, {THREADS} threads, {repeats} alternating repeats (median ms/img)")
    for key, values in times.items():
        print(f"  {key:>10}: {1000 * statistics.median(values):8.1f}")
    met = True
    for base, target in zip(("ort_fp32", "torch_fp32"), TARGETS.get(name, (None, None)), strict=True):
        ratio = statistics.median(b / a for a, b in zip(times["ort_int8"], times[base], strict=True))
        verdict = "" if target is None else f" (target >= {target:g}x: {'met' if ratio >= target else 'NOT met'})"
        met &= target is None or ratio >= target
        print(f"  ort_int8 speed-up over {base}: {ratio:.2f}x{verdict}")
    return met


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated registry names")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--profile", action="store_true", help="also print ORT's per-op-type times")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(THREADS)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    results = {name: bench(name, args.size, args.repeats) for name in names}
    if args.profile:
        for name in names:
            print_profile(name, args.size)
    missed = [name for name, met in results.items() if not met]
    print("\nall targets met" if not missed else f"\ntargets not met: {', '.join(missed)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
