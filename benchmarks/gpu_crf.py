"""The GPU dense CRF's checks of issue 21, run by ``benchmarks/gpu_check.py`` (or alone).

    python3 benchmarks/gpu_crf.py [--size 512] [--repeat 7] [--images 32] [--json out.json]

On a machine with an NVIDIA GPU and numba-cuda (``pip install 'tseg[cuda]'``; on the lent
machine see ``../shared/gpu/README.md``):

1. parity at ``--size`` (a photo-like image, 12 classes, 5 iterations; default and DeepLab's
   parameters): the GPU's labels against the CPU path's (>= 99.9% of pixels) and max |dQ|
   (<= 1e-3), and against pydensecrf2's where it is installed;
2. timings per stage, medians of ``--repeat`` runs, the device synchronised after each:
   ``build`` (both lattices from the image), ``upload`` (probabilities to the device and the
   unary), ``iterations``, ``labels`` (the argmax and the uint8 labels back), against the
   targets: <= 10 ms in all with default parameters, <= 25 ms with DeepLab's;
3. the pipeline: ``tseg-infer --device cuda`` over ``--images`` generated JPEGs with and
   without ``--crf --crf-device cuda`` (target: >= 0.5x the images/s without the CRF), on
   the model given to :func:`check_gpu_crf` (gpu_check.py's tiny model: a light model makes
   the ratio a severe test).

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``, no GPU) parts 1 and 2 run on tiny
sizes, so that this script is tested without a GPU (tests/benchmarks/test_gpu_crf.py); its
timings then mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_crf_reference as ref  # noqa: E402

ITERATIONS = 5
CLASSES = 12
MIN_AGREEMENT, MAX_DQ = 0.999, 1e-3
TARGET_MS = {"default": 10.0, "deeplab": 25.0}
MIN_PIPELINE_RATIO = 0.5
PARAMETERS = {"default": dict(ref.DEFAULT), "deeplab": dict(ref.DEEPLAB)}

Report = Callable[[str, bool, str], None]


def _inputs(size: int, params: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    case = ref.Case(f"gpu {size}", "photo", size, size, CLASSES, ITERATIONS, dict(params))
    return ref.make_inputs(case)


def check_parity(size: int, results: dict, report: Report) -> None:
    """The GPU's Q and labels against the CPU path's (and pydensecrf2's where installed)."""
    from tseg.runtime.crf import dense_crf

    for name, params in PARAMETERS.items():
        image, probs, settings = _inputs(size, params)
        cpu = dense_crf(probs, image, iterations=ITERATIONS, threads=1, **settings)
        gpu = dense_crf(probs, image, iterations=ITERATIONS, device="cuda", **settings)
        agree = float((cpu.argmax(0) == gpu.argmax(0)).mean())
        dq = float(np.abs(cpu - gpu).max())
        row = {"agreement_with_cpu": agree, "max_dq_cpu": dq}
        try:
            from pydensecrf.utils import unary_from_softmax

            reference = ref.reference_q(image, unary_from_softmax(probs), settings, ITERATIONS)
            row.update(agreement_with_pydensecrf=float((reference.argmax(0) == gpu.argmax(0)).mean()),
                       max_dq_pydensecrf=float(np.abs(reference - gpu).max()))
        except ImportError:
            row["pydensecrf"] = "not installed"
        results[f"crf_parity_{name}"] = row
        report(f"crf_parity_{name}", agree >= MIN_AGREEMENT and dq <= MAX_DQ,
               f"{size}x{size}, {CLASSES} classes: labels {agree:.4%} equal to the CPU's, max |dQ| {dq:.2e}"
               + (f"; pydensecrf2 {row['agreement_with_pydensecrf']:.4%}, {row['max_dq_pydensecrf']:.2e}"
                  if "max_dq_pydensecrf" in row else ""))


def _stage_times(image: np.ndarray, probs: np.ndarray, settings: dict) -> dict:
    """One call's seconds per stage, the device synchronised after each: the lattices, the
    logits' copy to the device (as a model's output on the host would go), the unary taken
    there, the iterations and the labels back. ``on_device`` leaves the copy out (the
    issue's "from logits on the device to labels")."""
    from numba import cuda

    from tseg.runtime.crf import DenseCRF
    from tseg.runtime.crf.unary import CLIP

    logits = np.log(np.maximum(probs, np.float32(1e-30))).astype(np.float32)
    times = {}
    start = time.perf_counter()
    with DenseCRF(image, device="cuda", **settings) as crf:
        cuda.synchronize()
        times["build"] = time.perf_counter() - start
        start = time.perf_counter()
        on_device = cuda.to_device(logits)
        cuda.synchronize()
        times["upload"] = time.perf_counter() - start
        start = time.perf_counter()
        with crf.start_from_logits(on_device, CLIP) as state:
            cuda.synchronize()
            times["unary"] = time.perf_counter() - start
            start = time.perf_counter()
            state.step(ITERATIONS)
            cuda.synchronize()
            times["iterations"] = time.perf_counter() - start
            start = time.perf_counter()
            state.labels(np.uint8)
            times["labels"] = time.perf_counter() - start
    times["total"] = sum(times.values())
    times["on_device"] = times["total"] - times["upload"]
    return times


def check_timings(size: int, repeat: int, results: dict, report: Report, *, simulated: bool) -> None:
    """Medians of ``repeat`` calls per stage, against the issue's targets (none under the simulator)."""
    for name, params in PARAMETERS.items():
        image, probs, settings = _inputs(size, params)
        _stage_times(image, probs, settings)  # compiled (or loaded from the cache) first
        runs = [_stage_times(image, probs, settings) for _ in range(repeat)]
        ms = {stage: statistics.median(r[stage] for r in runs) * 1e3 for stage in runs[0]}
        results[f"crf_ms_{name}"] = ms
        detail = ", ".join(f"{stage} {value:.2f}" for stage, value in ms.items())
        target = TARGET_MS[name]
        report(f"crf_time_{name}", simulated or ms["on_device"] <= target,
               f"{size}x{size}, {ITERATIONS} it, ms: {detail} (target <= {target:g} ms"
               + (", not judged under the simulator)" if simulated else ")"))


def _write_photos(folder: Path, count: int, size: int) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        image = ref.make_image("photo", size, size, seed=i)
        Image.fromarray(image).save(folder / f"{i:03d}.jpg", quality=90)
    return folder


def _images_per_second(model: Path, photos: Path, out: Path, extra: list[str]) -> float:
    args = [sys.executable, "-m", "tseg.runtime.infer.cli", str(photos), "--model", str(model),
            "--out", str(out), "--device", "cuda", "--quiet", *extra]
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=600)  # warm: kernels, engine
    start = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, text=True, timeout=600)
    return len(list(photos.iterdir())) / (time.perf_counter() - start)


def check_pipeline(model: Path, size: int, images: int, results: dict, report: Report) -> None:
    """tseg-infer --device cuda with and without the GPU CRF, images/s (process start included
    in both: the same overhead on each side)."""
    with tempfile.TemporaryDirectory() as folder:
        photos = _write_photos(Path(folder) / "photos", images, size)
        plain = _images_per_second(model, photos, Path(folder) / "plain", [])
        crf = _images_per_second(model, photos, Path(folder) / "crf", ["--crf", "--crf-device", "cuda"])
    ratio = crf / plain
    results["crf_pipeline"] = {"images_per_s": plain, "images_per_s_crf": crf, "ratio": ratio}
    report("crf_pipeline", ratio >= MIN_PIPELINE_RATIO,
           f"{images} JPEGs {size}x{size}: {plain:.1f} img/s, with --crf on the GPU {crf:.1f} ({ratio:.2f}x, "
           f"target >= {MIN_PIPELINE_RATIO}x)")


def check_handoff(model: Path, results: dict, report: Report) -> None:
    """The model's bound output left on the GPU for the CRF (issue 21, item 4): a device array, not a
    host one, whose labels equal those of the logits copied to the host first."""
    from tseg.runtime.segment.refine import CrfParams
    from tseg.runtime.segment.segmenter import Segmenter

    segmenter = Segmenter(model, device="cuda", crf=CrfParams(device="cuda"), batch_size=1)
    image = np.random.default_rng(0).integers(0, 256, (*segmenter.metadata.input_size, 3), np.uint8)
    batch = segmenter.preprocess(image)[None]
    on_device = segmenter.run_batch(batch, on_device=True)
    kept = segmenter.logits_on_device and hasattr(on_device, "copy_to_host")
    same = kept and np.array_equal(segmenter.crf.refine_logits(on_device[0], image),
                                   segmenter.crf.refine_logits(segmenter.run_batch(batch)[0], image))
    results["handoff"] = {"logits_on_device": bool(kept), "labels_equal": bool(same)}
    report("crf_handoff", bool(kept and same),
           f"the model's logits stay on the GPU for the CRF: {kept}, labels as from host logits: {same}")


def check_gpu_crf(model: Path | None, results: dict, report: Report, *, size: int = 512,
                  repeat: int = 7, images: int = 32) -> None:
    """Every check above; the pipeline only with a model and ``images`` > 0."""
    from tseg.runtime.crf.cuda.device import cuda_problem, simulated

    problem = cuda_problem()
    if problem:
        report("crf_gpu", False, f"the CUDA CRF cannot run here: it needs {problem}")
        return
    check_parity(size, results, report)
    check_timings(size, repeat, results, report, simulated=simulated())
    if model is not None:
        check_handoff(model, results, report)
    if model is not None and images > 0:
        check_pipeline(model, size, images, results, report)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="image side (a tiny one under the simulator)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--model", type=Path, help="a tseg .onnx for the pipeline check (none: skipped)")
    parser.add_argument("--images", type=int, default=32)
    default = Path(os.environ["OUT"]) / "gpu_crf.json" if os.environ.get("OUT") else None
    parser.add_argument("--json", type=Path, default=default, help="also write the results here")
    args = parser.parse_args()
    from gpu_check import FAILED, report  # its lines and its list of failed checks

    results: dict = {}
    check_gpu_crf(args.model, results, report, size=args.size, repeat=args.repeat, images=args.images)
    results["failed"] = FAILED
    print("all GPU CRF checks passed" if not FAILED else "FAILED: " + ", ".join(FAILED))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
