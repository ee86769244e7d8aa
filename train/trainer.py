"""A training run, top to bottom: settings -> data -> model -> optimizer -> loop."""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from tseg.runtime import __version__
from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.labels import atomic_write_bytes
from tseg.runtime.metadata import default_palette
from tseg.runtime.metrics import SegmentationScores, format_scores
from tseg.train.checkpoints import ModelSpec, save_checkpoint
from tseg.train.data.dataset import SegmentationDataset, collate_with_full_labels
from tseg.train.engine import evaluate, train_one_epoch
from tseg.train.models import check_model_name, get_model
from tseg.train.settings import IMAGENET_MEAN, IMAGENET_STD, TrainSettings


@dataclass(frozen=True)
class RunResult:
    """Where a run went and how it ended."""

    run_dir: Path
    best_miou: float
    best_epoch: int
    last_scores: SegmentationScores
    classes: tuple[str, ...]


def create_run_dir(runs_dir: Path, name: str) -> Path:
    """Makes ``runs_dir/name``, or name-2, name-3 ... : an earlier run is never overwritten."""
    if not name or "/" in name or name in (".", ".."):
        raise TsegError(f"run name must be a plain folder name, got {name!r}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        candidate = runs_dir / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise TsegError(f"too many runs named {name!r} in {runs_dir}")


def resolve_data_root(data: Path | None) -> Path:
    """The dataset folder: the given one, or the built-in synthetic set (generated on first use)."""
    if data is None:
        from tseg.train.data.synthetic import ensure_synthetic_dataset

        return ensure_synthetic_dataset()
    if not data.is_dir():
        raise TsegError(f"data folder not found: {data}")
    return data


def _device(name: str) -> torch.device:
    if name not in ("auto", "cpu", "cuda"):
        raise TsegError(f"unknown device {name!r}; valid: auto, cpu, cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise TsegError("device 'cuda' requested but PyTorch sees no CUDA GPU")
    return torch.device("cuda" if name != "cpu" and torch.cuda.is_available() else "cpu")


def _loaders(settings: TrainSettings, train: CocoDataset, val: CocoDataset):
    size = (settings.size, settings.size)
    common = dict(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD, cache=settings.cache)
    generator = torch.Generator().manual_seed(settings.seed)
    train_loader = DataLoader(
        SegmentationDataset(train, hflip=settings.hflip, **common),
        batch_size=settings.batch_size,
        shuffle=True,
        drop_last=len(train) > settings.batch_size,
        num_workers=settings.workers,
        collate_fn=collate_with_full_labels,
        generator=generator,
    )
    val_loader = DataLoader(
        SegmentationDataset(val, **common),
        batch_size=settings.batch_size,
        num_workers=settings.workers,
        collate_fn=collate_with_full_labels,
    )
    return train_loader, val_loader


def _check_settings(settings: TrainSettings, train: CocoDataset, val: CocoDataset) -> None:
    if settings.epochs < 1 or settings.batch_size < 1 or settings.size < 16 or settings.lr <= 0:
        raise TsegError(
            f"need epochs >= 1, batch size >= 1, size >= 16 and lr > 0; got {settings.epochs},"
            f" {settings.batch_size}, {settings.size}, {settings.lr}"
        )
    if settings.batch_size > len(train):
        raise TsegError(f"batch size {settings.batch_size} exceeds the {len(train)} training images")
    if val.classes != train.classes:
        raise TsegError(
            f"{val.json_path.name} and {train.json_path.name} have different categories:"
            f" {list(val.classes)} vs {list(train.classes)}"
        )
    if not train.has_annotations:
        raise TsegError(f"{train.json_path} has no annotations to train on")


class MetricsLog:
    """metrics.csv, rewritten atomically after every epoch."""

    def __init__(self, path: Path, classes: tuple[str, ...]) -> None:
        self.path, self.classes, self.rows = path, classes, []

    def append(self, row: dict[str, float], scores: SegmentationScores) -> None:
        row = dict(row, **{f"iou/{c}": v for c, v in zip(self.classes, scores.iou, strict=True)})
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
        writer.writeheader()
        writer.writerows(self.rows)
        atomic_write_bytes(self.path, buffer.getvalue().encode())


def _model_spec(settings: TrainSettings, classes: tuple[str, ...]) -> ModelSpec:
    return ModelSpec(
        name=settings.model,
        kwargs={"num_classes": len(classes)},
        classes=classes,
        palette=default_palette(len(classes)),
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        input_size=(settings.size, settings.size),
    )


def _start_run(settings: TrainSettings, root: Path) -> tuple[Path, dict]:
    """Creates the run folder and saves the resolved settings in it."""
    run_dir = create_run_dir(settings.runs_dir, settings.name)
    resolved = dict(settings.to_dict(), data=str(root), tseg_version=__version__)
    atomic_write_bytes(run_dir / "settings.json", json.dumps(resolved, indent=2).encode())
    return run_dir, resolved


def train(settings: TrainSettings) -> RunResult:
    """Runs a training from the settings; writes runs/NAME with checkpoints and metrics.

    Raises:
        TsegError: bad data or settings (one line, no traceback in the CLI).
    """
    check_model_name(settings.model)
    root = resolve_data_root(settings.data)
    train_set = CocoDataset(root / settings.train_json, root=root)
    val_set = CocoDataset(root / settings.val_json, root=root)
    _check_settings(settings, train_set, val_set)
    device = _device(settings.device)
    torch.manual_seed(settings.seed)
    spec = _model_spec(settings, train_set.classes)
    model = get_model(
        settings.model, num_classes=len(spec.classes), backbone_weights=settings.backbone_weights
    )
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    loaders = _loaders(settings, train_set, val_set)
    run_dir, resolved = _start_run(settings, root)
    print(
        f"run {run_dir}: {settings.model}, {len(train_set)} train / {len(val_set)} val images"
        f" from {root}, {len(spec.classes)} classes, device {device}",
        flush=True,
    )
    return _fit(
        settings, model, optimizer, loaders, spec=spec, run_dir=run_dir, resolved=resolved, device=device
    )


def _fit(settings, model, optimizer, loaders, *, spec, run_dir, resolved, device) -> RunResult:
    """The epoch loop: train, validate, log, checkpoint (last always, best on a new best mIoU)."""
    train_loader, val_loader = loaders
    log = MetricsLog(run_dir / "metrics.csv", spec.classes)
    best_miou, best_epoch = -1.0, 0
    for epoch in range(1, settings.epochs + 1):
        start = time.perf_counter()
        train_loss = train_one_epoch(
            model, train_loader, optimizer, device=device, epoch=epoch, progress=settings.progress
        )
        val_loss, scores = evaluate(
            model, val_loader, num_classes=len(spec.classes), device=device, progress=settings.progress
        )
        seconds = time.perf_counter() - start
        metrics = {
            "epoch": epoch,
            "lr": settings.lr,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_miou": scores.miou,
            "val_pixel_accuracy": scores.pixel_accuracy,
            "seconds": seconds,
        }
        log.append(metrics, scores)
        ckpt = dict(
            spec=spec, model=model, epoch=epoch, metrics=metrics, settings=resolved, tseg_version=__version__
        )
        save_checkpoint(run_dir / "last.pt", **ckpt)
        if scores.miou > best_miou:
            best_miou, best_epoch = scores.miou, epoch
            save_checkpoint(run_dir / "best.pt", **ckpt)
        print(
            f"epoch {epoch}/{settings.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}"
            f"  val mIoU {scores.miou:.4f}  ({seconds:.0f} s)",
            flush=True,
        )
    print(f"best val mIoU {best_miou:.4f} at epoch {best_epoch}; last epoch:")
    print(format_scores(scores, spec.classes))
    return RunResult(run_dir, best_miou, best_epoch, scores, spec.classes)
