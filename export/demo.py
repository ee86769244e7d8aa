"""`make demo`: the whole pipeline on the built-in dataset, with the numbers that prove it.

Builds the synthetic dataset, trains on the CPU for a few minutes, exports to
ONNX (parity checked), runs the torch-free runtime over the validation split,
with and without the dense CRF, and compares its mIoU with the training-time one.

Usage: python -m tseg.export.demo [--epochs N] [--runs-dir DIR]
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from tseg.export.accuracy import summary
from tseg.export.pipeline import export_checkpoint
from tseg.export.precisions import PrecisionSettings
from tseg.runtime.cli_errors import one_line_errors
from tseg.runtime.errors import TsegError
from tseg.runtime.infer.run import InferSettings, infer_coco
from tseg.runtime.segment.refine import CrfParams
from tseg.train.data.synthetic import ensure_synthetic_dataset
from tseg.train.settings import TrainSettings
from tseg.train.trainer import train

MIOU_TOLERANCE = 0.005  # ONNX runtime vs training-time validation
DEMO_PRECISIONS = ("fp32", "fp16", "int8")


def run_demo(*, epochs: int, size: int, batch_size: int, lr: float, runs_dir: Path) -> dict:
    """Runs train -> export -> infer on the synthetic dataset; returns the figures.

    Raises:
        TsegError: parity failed or the runtime's mIoU differs from training's.
    """
    start = time.perf_counter()
    data = ensure_synthetic_dataset()
    settings = TrainSettings(
        data=data,
        epochs=epochs,
        size=size,
        batch_size=batch_size,
        lr=lr,
        lr_schedule="warmup-cosine",
        warmup_epochs=0.5,
        bn_momentum=0.1,
        min_lr=lr / 20,
        cache=True,
        name="demo",
        runs_dir=runs_dir,
    )
    run = train(settings, report=print)  # the demo is a script: its lines go to stdout
    exported = export_checkpoint(
        run.run_dir / "best.pt", data=data, precision=PrecisionSettings(precisions=DEMO_PRECISIONS)
    )
    print(exported.report.summary())
    print(summary(exported.verdicts))
    predictions = run.run_dir / "val_predictions"
    result = infer_coco(
        data / "val.json",
        data_root=data,
        evaluate=True,
        settings=InferSettings(model=exported.onnx_path, out=predictions, crf=CrfParams()),
    )
    figures = {
        "train_val_miou": run.best_miou,
        "onnx_val_miou": result.scores.miou,
        "engine": ", ".join(result.providers),
        "crf_val_miou": result.crf_scores.miou,
        "parity_worst_agreement": exported.report.worst_agreement,
        "parity_max_abs_diff": exported.report.max_abs_diff,
        "precisions": {v.precision: v for v in exported.verdicts},
        "minutes": (time.perf_counter() - start) / 60,
        "run_dir": run.run_dir,
        "onnx": exported.onnx_path,
        "predictions": predictions,
        "data": data,
    }
    _print_summary(figures)
    if not exported.passed:
        raise TsegError("ONNX parity or accuracy check failed (see the tables above)")
    if abs(figures["onnx_val_miou"] - figures["train_val_miou"]) > MIOU_TOLERANCE:
        raise TsegError(
            f"runtime mIoU {figures['onnx_val_miou']:.4f} differs from training-time"
            f" {figures['train_val_miou']:.4f} by more than {MIOU_TOLERANCE}"
        )
    return figures


def _print_summary(f: dict) -> None:
    print("\n=== tseg demo ===")
    print(f"dataset               {f['data']}")
    print(f"training-time val mIoU {f['train_val_miou']:.4f}  (PyTorch, best epoch)")
    print(f"runtime val mIoU       {f['onnx_val_miou']:.4f}  (tseg-infer --eval on {f['engine']}, no torch)")
    print(f"with the dense CRF     {f['crf_val_miou']:.4f}  (tseg-infer --eval --crf, default"
          " parameters; --crf-tune searches better ones)")
    print(
        f"parity                 argmax agreement >= {f['parity_worst_agreement']:.4%},"
        f" max |dlogit| {f['parity_max_abs_diff']:.2e}"
    )
    for precision, verdict in f["precisions"].items():
        if verdict.split is not None:
            print(
                f"{precision + ' ONNX val mIoU':<22} {verdict.split.miou:.4f}  (PyTorch {verdict.torch_miou:.4f},"
                f" drop {verdict.miou_drop:+.4f}; {verdict.details.get('bytes', 0) / 2**20:.1f} MiB)"
            )
    print(
        f"outputs                {f['run_dir']} (checkpoints, metrics.csv), {f['onnx']},"
        f" label PNGs in {f['predictions']}"
    )
    print(f"total time             {f['minutes']:.1f} min")


@click.command()
@click.option("--epochs", default=12, show_default=True)
@click.option("--size", default=256, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--lr", default=2e-3, show_default=True)
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(path_type=Path))
@one_line_errors
def main(epochs: int, size: int, batch_size: int, lr: float, runs_dir: Path) -> None:
    """Train, export and run a model on the built-in synthetic dataset."""
    run_demo(epochs=epochs, size=size, batch_size=batch_size, lr=lr, runs_dir=runs_dir)


if __name__ == "__main__":
    main()
