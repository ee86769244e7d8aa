"""The model zoo side by side: size, compute, and CPU latency in PyTorch and ONNX Runtime.

    python benchmarks/models.py                        # every model, 256 and 512, 2 threads
    python benchmarks/models.py --models deeplabv3_resnet50 fcn8s_vgg16 --repeat 5
    python benchmarks/models.py --markdown             # the table for the README

Per model: parameters (12 classes, the competition's labels, no aux head), GFLOPs of one
512x512 forward counted by torch.utils.flop_counter (a multiply-add is 2 FLOPs), and the
median latency of a batch of one at each size, PyTorch eager (no_grad) and ONNX Runtime
on the CPU, the model exported by tseg.export.onnx.export_onnx (dynamic sizes, onnxslim).
The two engines alternate run by run (ONNX Runtime's threads do not spin between runs),
so their ratio is fair even on a shared, noisy machine where absolute times drift.
Also checks parameter counts against torchvision's published figures where one exists
(21 classes with the aux head).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

NUM_CLASSES = 12
FLOPS_SIZE = 512
# name -> (the options that are torchvision's configuration, torchvision's weights enum name)
PUBLISHED = {
    "deeplabv3_resnet50": (dict(output_stride=8, multi_grid=None), "DeepLabV3_ResNet50_Weights"),
    "deeplabv3_resnet101": (dict(output_stride=8, multi_grid=None), "DeepLabV3_ResNet101_Weights"),
    "deeplabv3_mobilenet_v3_large": ({}, "DeepLabV3_MobileNet_V3_Large_Weights"),
}


@dataclass
class Row:
    name: str
    params: int
    gflops: float
    latency_ms: dict[tuple[str, int], float]  # (engine, size) -> median ms


def count_gflops(model: torch.nn.Module, size: int) -> float:
    """FLOPs of one (1, 3, size, size) forward, in billions."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.randn(1, 3, size, size))
    return counter.get_total_flops() / 1e9


def export(model: torch.nn.Module, name: str, folder: Path) -> Path:
    from tseg.export.onnx import export_onnx
    from tseg.train.checkpoints import ModelSpec

    spec = ModelSpec(
        name=name,
        kwargs={"num_classes": NUM_CLASSES},
        classes=tuple(f"class{i}" for i in range(NUM_CLASSES)),
        palette=tuple((i, i, i) for i in range(NUM_CLASSES)),
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        input_size=(256, 256),
    )
    return export_onnx(model, spec, folder / f"{name}.onnx")


def time_engines(model, session, sizes: list[int], repeat: int) -> dict[tuple[str, int], float]:
    """Median ms per engine and size; one warm-up each, then torch and ORT alternate."""
    input_name = session.get_inputs()[0].name
    times: dict[tuple[str, int], list[float]] = {}
    for size in sizes:
        x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
        runs = {
            "torch": lambda x=x: model(torch.from_numpy(x)),
            "onnxruntime": lambda x=x: session.run(None, {input_name: x}),
        }
        for run in runs.values():
            run()
        for _ in range(repeat):
            for engine, run in runs.items():
                start = time.perf_counter()
                run()
                times.setdefault((engine, size), []).append(1e3 * (time.perf_counter() - start))
    return {key: statistics.median(values) for key, values in times.items()}


def cpu_session(onnx_path: Path, threads: int):
    """An ONNX Runtime CPU session whose idle threads sleep instead of spinning.

    Spinning threads would steal the cores from the PyTorch runs that alternate with them.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def benchmark(name: str, *, sizes: list[int], repeat: int, threads: int, folder: Path) -> Row:
    from tseg.train.models import get_model

    torch.manual_seed(0)
    model = get_model(name, num_classes=NUM_CLASSES).eval()
    params = sum(p.numel() for p in model.parameters())
    gflops = count_gflops(model, FLOPS_SIZE)
    onnx_path = export(model, name, folder)
    session = cpu_session(onnx_path, threads)
    with torch.no_grad():
        latency = time_engines(model, session, sizes, repeat)
    onnx_path.unlink()
    return Row(name, params, gflops, latency)


def header(sizes: list[int]) -> list[str]:
    cols = ["model", "params (M)", f"GFLOPs @{FLOPS_SIZE}"]
    for size in sizes:
        cols += [f"torch {size} (ms)", f"ORT {size} (ms)"]
    return cols


def cells(row: Row, sizes: list[int]) -> list[str]:
    out = [row.name, f"{row.params / 1e6:.1f}", f"{row.gflops:.1f}"]
    for size in sizes:
        out += [f"{row.latency_ms[('torch', size)]:.0f}", f"{row.latency_ms[('onnxruntime', size)]:.0f}"]
    return out


def format_table(rows: list[Row], sizes: list[int], *, markdown: bool) -> str:
    table = [header(sizes)] + [cells(r, sizes) for r in rows]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in table]
        lines.insert(1, "|" + "|".join(["---"] + ["---:"] * (len(table[0]) - 1)) + "|")
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        for r in table
    )


def check_published_counts() -> list[str]:
    """Our parameter counts in torchvision's configuration against its published figures."""
    from torchvision.models import segmentation as tv_seg

    from tseg.train.models import get_model

    lines = []
    for name, (options, enum_name) in PUBLISHED.items():
        published = getattr(tv_seg, enum_name).DEFAULT.meta["num_params"]
        ours = sum(p.numel() for p in get_model(name, num_classes=21, aux_loss=True, **options).parameters())
        verdict = "matches" if ours == published else "DIFFERS from"
        lines.append(f"{name} (21 classes, aux head): {ours:,} {verdict} torchvision's {published:,}")
    return lines


def main(argv: list[str] | None = None) -> int:
    from tseg.train.models import list_models

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help="Names (default: every registered model).")
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512])
    parser.add_argument("--repeat", type=int, default=3, help="Timed runs per engine and size (median).")
    parser.add_argument("--threads", type=int, default=2, help="Threads for PyTorch and ONNX Runtime.")
    parser.add_argument("--markdown", action="store_true", help="Print the final table as Markdown.")
    args = parser.parse_args(argv)
    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        parser.error(f"unknown models {unknown}; valid: {', '.join(list_models())}")
    torch.set_num_threads(args.threads)

    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores; the machine is busy and times are noisy")
    print("\n".join(check_published_counts()), flush=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tseg-bench-") as folder:
        for name in names:
            start = time.perf_counter()
            rows.append(
                benchmark(name, sizes=args.sizes, repeat=args.repeat, threads=args.threads, folder=Path(folder))
            )
            print(cells(rows[-1], args.sizes), f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(f"\n{args.threads} CPU threads, batch 1, median of {args.repeat} runs, {NUM_CLASSES} classes:")
    print(format_table(rows, args.sizes, markdown=args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
