"""The GPU checks of issue 10 (CUDA provider, IOBinding): one short script for a machine with a GPU.

No GPU is needed to develop tseg; these checks need one. Set the machine up as
``../shared/gpu/README.md`` says (onnxruntime-gpu in /tmp/site, ``export PYTHONPATH=/tmp/site``,
tseg installed from the work tree), then from the repository root::

    python3 benchmarks/gpu_check.py [--json results.json]

On the lent machine, after the last part has gone over, the whole run is::

    bash .gpu/assemble.sh && export PYTHONPATH=/tmp/site &&
    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . &&
    python3 benchmarks/gpu_check.py

It builds a tiny tseg model (3x3 conv, ReLU, 1x1 conv; dynamic batch, height, width) and checks:

0. (informative) whether ``preload_dlls`` alone finds the CUDA libraries; if not, torch is imported first.
1. ``create_session(device="cuda")`` runs on CUDAExecutionProvider (after ``preload_dlls``).
2. ``BoundRunner`` binds (IOBinding) and matches a CPU session (max |d|) over several batch shapes.
3. ``BoundRunner`` on CUDA matches ``session.run`` on the same CUDA session.
4. ``device="auto"`` picks CUDA and says so on stderr.
5. ``Segmenter(device="cuda")`` gives the CPU's labels.
6. ``--device tensorrt`` without TensorRT's libraries: exit 1, one line ``Error: --device tensorrt ...``
   (if TensorRT does load, that is reported instead).
7. The dense CRF on the GPU (issue 21, ``benchmarks/gpu_crf.py``): parity with the CPU path (and
   pydensecrf2) at 512x512, timings per stage against the targets, the model's logits handed to
   the CRF on the GPU (``crf_handoff``), and ``tseg-infer --device cuda`` with and without
   ``--crf --crf-device cuda``.

Prints one line per check and a summary; exit status 1 when a check failed. With ``--json``
(or ``$OUT`` set), the results also go to a JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
CLASSES = ("Background", "Metal", "Paper", "Glass", "Plastic")
TOLERANCE = 1e-3  # GPU convolutions (TF32, other algorithms) differ from the CPU in the last bits
SHAPES = [(1, 64, 64), (4, 96, 128), (8, 256, 256), (3, 17, 31)]


def tiny_model(path: Path) -> Path:
    """A tseg model: 3x3 conv (3 -> 16), ReLU, 1x1 conv (16 -> classes), with tseg metadata."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tseg.runtime.model.metadata import ModelMetadata, default_palette

    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.3, (16, 3, 3, 3)).astype(np.float32)
    w2 = rng.normal(0, 0.3, (len(CLASSES), 16, 1, 1)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["image", "w1"], ["h"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("Conv", ["r", "w2"], ["logits"]),
        ],
        "gpu_check",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES), "H", "W"])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = ModelMetadata(
        classes=CLASSES, palette=default_palette(len(CLASSES)), mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        input_size=(64, 64), model_name="gpu_check", tseg_version="gpu-check", extra={},
    )  # fmt: skip
    for key, value in meta.to_props().items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def check_preload_alone(model: Path, results: dict) -> None:
    """Does ``preload_dlls`` alone find CUDA and cuDNN (no torch imported)? In a fresh process.

    It finds NVIDIA's pip wheels installed beside onnxruntime (``pip install 'tseg[cuda]'``
    puts them there). On the lent GPU machine onnxruntime-gpu sits in /tmp/site and the
    wheels beside the image's torch, so this may fail there; the other checks then import
    torch first, which loads the same libraries.
    """
    code = (
        "import sys\n"
        "from tseg.runtime.model.session import create_session\n"
        f"print(create_session({str(model)!r}, device='cuda').get_providers()[0])\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    results["preload_alone"] = {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-1000:]}
    ok = run.returncode == 0 and run.stdout == f"{CUDA}\nno torch\n"
    detail = run.stdout.strip() if ok else (run.stderr.strip().splitlines() or ["no output"])[-1]
    print(f"{'ok  ' if ok else 'note'} 0 cuda with preload_dlls alone: {detail[:400]}")
    if not ok:
        try:
            import torch  # noqa: F401  (loads CUDA and cuDNN from the image's NVIDIA wheels)

            results["torch_imported_first"] = True
            print("note 0 importing torch first to load the CUDA libraries for the checks below")
        except ImportError:
            results["torch_imported_first"] = False


def check_cuda_session(model: Path, results: dict) -> None:
    import onnxruntime as ort

    from tseg.runtime.model.binding import BoundRunner
    from tseg.runtime.model.session import create_session

    results["onnxruntime"] = ort.__version__
    results["available_providers"] = ort.get_available_providers()
    start = time.perf_counter()
    cuda = create_session(model, device="cuda")
    results["cuda_session_seconds"] = round(time.perf_counter() - start, 2)
    results["providers"] = cuda.get_providers()
    assert cuda.get_providers()[0] == CUDA, f"providers {cuda.get_providers()}"
    report("1 cuda session", True, f"providers {cuda.get_providers()} in {results['cuda_session_seconds']} s")

    cpu = create_session(model, device="cpu")
    runner = BoundRunner(cuda, input_name="image", output_name="logits")
    assert runner.uses_binding, "BoundRunner did not choose IOBinding on CUDA"
    worst_cpu, worst_run = 0.0, 0.0
    for n, h, w in SHAPES:
        x = np.random.default_rng(n * h).normal(size=(n, 3, h, w)).astype(np.float32)
        bound = runner.run(x)
        reference = cpu.run(["logits"], {"image": x})[0]
        plain = cuda.run(["logits"], {"image": x})[0]
        assert bound.shape == reference.shape == (n, len(CLASSES), h, w), bound.shape
        worst_cpu = max(worst_cpu, float(np.abs(bound - reference).max()))
        worst_run = max(worst_run, float(np.abs(bound - plain).max()))
    results["max_abs_diff_bound_vs_cpu"] = worst_cpu
    results["max_abs_diff_bound_vs_session_run"] = worst_run
    report("2 IOBinding vs CPU", worst_cpu < TOLERANCE, f"max |d| {worst_cpu:.3g} over shapes {SHAPES}")
    report("3 IOBinding vs cuda session.run", worst_run < TOLERANCE, f"max |d| {worst_run:.3g}")
    results["images_per_s_256_batch8"] = timings(runner, cuda)


def timings(runner, session) -> dict:
    """Informative only: batch 8 at 256x256, IOBinding vs session.run on the same session."""
    x = np.random.default_rng(1).normal(size=(8, 3, 256, 256)).astype(np.float32)
    out = {}
    calls = {"bound": lambda: runner.run(x), "session_run": lambda: session.run(["logits"], {"image": x})}
    for name, call in calls.items():
        call()
        start = time.perf_counter()
        for _ in range(20):
            call()
        out[name] = round(20 * 8 / (time.perf_counter() - start), 1)
    return out


def check_auto_and_segmenter(model: Path, results: dict) -> None:
    code = (
        ("import torch\n" if results.get("torch_imported_first") else "")
        + "from tseg.runtime.model.session import create_session\n"
        + f"print(create_session({str(model)!r}, device='auto').get_providers()[0])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    results["auto"] = {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-500:]}
    ok = run.returncode == 0 and run.stdout == f"{CUDA}\n" and f"running on {CUDA}" in run.stderr
    report("4 auto picks CUDA", ok, f"stdout {run.stdout.strip()!r}, stderr {run.stderr.strip()[-200:]!r}")

    from tseg.runtime.segment.segmenter import Segmenter

    image = np.random.default_rng(2).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    on_gpu = Segmenter(model, device="cuda").predict([image, image[::-1]])
    on_cpu = Segmenter(model, device="cpu").predict([image, image[::-1]])
    same = float(np.mean([np.mean(g.labels == c.labels) for g, c in zip(on_gpu, on_cpu, strict=True)]))
    results["segmenter_label_agreement"] = same
    report("5 Segmenter cuda vs cpu", same >= 0.999, f"{same:.5f} of labels equal")


def check_tensorrt(model: Path, results: dict) -> None:
    code = (
        "import click\n"
        "from tseg.runtime.cli_errors import one_line_errors\n"
        "from tseg.runtime.model.session import create_session\n"
        "@click.command()\n"
        "@one_line_errors\n"
        "def main():\n"
        f"    print(create_session({str(model)!r}, device='tensorrt').get_providers()[0])\n"
        "main()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    results["tensorrt"] = {"rc": run.returncode, "stdout": run.stdout, "stderr": run.stderr[-1000:]}
    if run.returncode == 0:
        report("6 tensorrt", run.stdout.startswith("Tensorrt"), f"TensorRT loaded: {run.stdout.strip()}")
        return
    one_line = run.returncode == 1 and run.stdout == "" and run.stderr.count("\n") == 1
    ok = one_line and run.stderr.startswith("Error: --device tensorrt")
    report("6 tensorrt refused in one line", ok, run.stderr.strip()[:300])


def check_tensorrt_engines(model: Path, results: dict) -> None:
    """7. TensorRT through ONNX Runtime: provider options, engine/timing caches, labels vs the CPU."""
    from tseg.runtime.model import tensorrt as trt
    from tseg.runtime.segment.segmenter import Segmenter

    gpu = trt.gpu_name()
    results["trt_gpu_name"] = gpu
    report("7a gpu name without torch", bool(gpu), repr(gpu))
    try:
        results["trt_version"] = trt.find_tensorrt()
    except Exception as err:  # TsegError: no TensorRT libraries on this machine
        results["trt_missing"] = str(err)
        report("7b tensorrt libraries", str(err).startswith("device='tensorrt':"), f"not found: {str(err)[:300]}")
        return
    image = np.random.default_rng(3).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    reference = Segmenter(model, device="cpu").predict([image, image[::-1]])
    with tempfile.TemporaryDirectory() as cache:
        for fp16 in (False, True):
            settings = trt.TensorrtSettings(fp16=fp16, cache_dir=Path(cache), batch_size=4)
            seconds = []
            for _ in range(2):  # the second session loads the cached engine
                start = time.perf_counter()
                seg = Segmenter(model, device="tensorrt", tensorrt=settings, batch_size=4)
                seconds.append(round(time.perf_counter() - start, 2))
            labels = seg.predict([image, image[::-1]])
            same = float(np.mean([np.mean(a.labels == b.labels) for a, b in zip(labels, reference, strict=True)]))
            engines = sorted(p.name for p in Path(cache).glob("tensorrt/engines/*/*"))
            timing = sorted(p.name for p in Path(cache).glob("tensorrt/timing/*/*"))
            results[f"trt_fp16_{fp16}"] = {"providers": seg.providers, "session_seconds": seconds,
                                          "agreement": same, "engines": engines, "timing": timing}
            ok = seg.providers[0] == "TensorrtExecutionProvider" and same >= 0.999 and engines and timing
            report(f"7c tensorrt fp16={fp16}", bool(ok), f"agreement {same:.5f}, sessions {seconds} s, "
                   f"{len(engines)} engine file(s), timing {timing}")


FAILED: list[str] = []


def check_crf(model: Path, results: dict) -> None:
    """Check 7: the GPU dense CRF (benchmarks/gpu_crf.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import gpu_crf

    gpu_crf.check_gpu_crf(model, results, report)


def report(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None
    parser.add_argument("--json", type=Path, default=default, help="also write the results here")
    args = parser.parse_args()
    results: dict = {"python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory() as folder:
        model = tiny_model(Path(folder) / "gpu_check.onnx")
        steps = (check_preload_alone, check_cuda_session, check_auto_and_segmenter, check_tensorrt,
                 check_tensorrt_engines, check_crf)
        for step in steps:
            try:
                step(model, results)
            except Exception as err:  # one failed step must not hide the others
                report(step.__name__, False, f"{type(err).__name__}: {str(err)[:300]}")
                results[f"{step.__name__}_error"] = traceback.format_exc()[-2000:]
    results["failed"] = FAILED
    print(f"{'all GPU checks passed' if not FAILED else 'FAILED: ' + ', '.join(FAILED)}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
