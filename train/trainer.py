"""A training run, top to bottom: settings -> processes -> data -> model -> optimizer -> loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from tseg.runtime import __version__
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.metrics import SegmentationScores, format_scores
from tseg.runtime.errors import TsegError, logger
from tseg.runtime.files import create_run_dir, remove_stale_temp_files
from tseg.runtime.model.metadata import default_palette
from tseg.train.checkpoints import ModelSpec, save_checkpoint
from tseg.train.data.loaders import build_datasets, build_loaders, label_counts
from tseg.train.distributed import DistContext, init_distributed, shutdown_distributed
from tseg.train.engine import LossSpec, Precision, evaluate, train_one_epoch
from tseg.train.models import check_model_name, get_model
from tseg.train.models.weights import load_fitting_state_dict
from tseg.train.optim import build_optimizer, build_schedule, parse_class_weights
from tseg.train.resume import load_resume_checkpoint, restore_rng_state, resume_settings, training_state
from tseg.train.runlog import RunLog, save_settings
from tseg.train.settings import IMAGENET_MEAN, IMAGENET_STD, TrainSettings


@dataclass(frozen=True)
class RunResult:
    """Where a run went and how it ended."""

    run_dir: Path
    best_miou: float
    best_epoch: int
    last_scores: SegmentationScores
    classes: tuple[str, ...]


def resolve_data_root(data: Path | None) -> Path:
    """The dataset folder: the given one, or the built-in synthetic set (generated on first use)."""
    if data is None:
        from tseg.train.data.synthetic import ensure_synthetic_dataset

        return ensure_synthetic_dataset()
    if not data.is_dir():
        raise TsegError(f"data folder not found: {data}")
    return data


def check_settings(settings: TrainSettings, train: CocoDataset, val: CocoDataset, world_size: int) -> None:
    """Settings that cannot work with this data, caught before any work starts.

    (Each setting's own type and range are checked when TrainSettings is made.)
    """
    if settings.batch_size > len(train):
        raise TsegError(f"batch size {settings.batch_size} exceeds the {len(train)} training images")
    if settings.batch_size % world_size:
        raise TsegError(f"batch size {settings.batch_size} must divide evenly over {world_size} processes")
    if val.classes != train.classes:
        raise TsegError(
            f"{val.json_path.name} and {train.json_path.name} have different categories:"
            f" {list(val.classes)} vs {list(train.classes)}"
        )
    if not train.has_annotations:
        raise TsegError(f"{train.json_path} has no annotations to train on")
    if settings.ignore_index < len(train.classes):
        raise TsegError(
            f"ignore_index {settings.ignore_index} is the label of class"
            f" {train.classes[settings.ignore_index]!r}; choose a label from {len(train.classes)} to 255",
            parameter="ignore_index",
        )


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


def _build_model(settings: TrainSettings, spec: ModelSpec, ctx: DistContext) -> torch.nn.Module:
    torch.manual_seed(settings.seed)
    model = get_model(settings.model, num_classes=len(spec.classes), backbone_weights=settings.backbone_weights)
    if settings.bn_momentum is not None:
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.momentum = settings.bn_momentum
    if settings.sync_bn and ctx.device.type != "cuda":
        raise TsegError("sync_bn=True needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only)")
    if settings.sync_bn and ctx.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(ctx.device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if ctx.distributed:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


@dataclass
class _Loop:
    """Mutable state of the epoch loop (what last.pt saves for --resume)."""

    start_epoch: int = 1
    step: int = 0
    best_miou: float = -1.0
    best_epoch: int = 0


def _prepare_run(settings: TrainSettings, root: Path, resume: Path | None, ctx: DistContext):
    """(run folder, resolved settings dict); only rank 0 creates folders and files."""
    resolved = dict(settings.to_dict(), data=str(root), tseg_version=__version__)
    if resume is not None:
        if ctx.is_main:  # temp files of writes that the crash cut short
            for folder in (resume, resume / "plots"):
                remove_stale_temp_files(folder)
        return Path(resume), resolved
    run_dir = create_run_dir(settings.runs_dir, settings.name) if ctx.is_main else None
    if ctx.distributed:
        shared = [str(run_dir) if run_dir else None]
        dist.broadcast_object_list(shared, src=0)
        run_dir = Path(shared[0])
    if ctx.is_main:
        save_settings(run_dir, resolved)
    return run_dir, resolved


def _restore(payload: dict, model, optimizer, scaler, log: RunLog | None, *, source: Path) -> _Loop:
    """Puts a run back where its last.pt left it.

    Raises:
        TsegError: the saved state does not fit this run (model, optimizer, RNG or log).
    """
    module = model.module if hasattr(model, "module") else model
    load_fitting_state_dict(module, payload["state_dict"], source=f"{source}'s state_dict", target="the run's model")
    try:
        optimizer.load_state_dict(payload["optimizer"])
        if scaler is not None and payload.get("scaler"):
            scaler.load_state_dict(payload["scaler"])
        restore_rng_state(payload["rng"])
        if log is not None:
            log.restore(payload["log"])
    except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as err:
        detail = str(err).splitlines()[0] if str(err) else ""
        raise TsegError(
            f"cannot resume: {source} holds training state that does not fit this run ({type(err).__name__}: {detail})"
        ) from None
    return _Loop(
        start_epoch=payload["epoch"] + 1,
        step=payload["step"],
        best_miou=payload["best_miou"],
        best_epoch=payload["best_epoch"],
    )


def _load_splits(settings: TrainSettings, ctx: DistContext) -> tuple[Path, CocoDataset, CocoDataset]:
    check_model_name(settings.model)
    if ctx.distributed and not ctx.is_main:
        dist.barrier()  # rank 0 generates the built-in dataset first
    root = resolve_data_root(settings.data)
    if ctx.distributed and ctx.is_main:
        dist.barrier()
    train = CocoDataset(root / settings.train_json, root=root)
    val = CocoDataset(root / settings.val_json, root=root)
    check_settings(settings, train, val, ctx.world_size)
    return root, train, val


def train(settings: TrainSettings, *, resume: str | Path | None = None,
          report: Callable[[str], None] | None = None) -> RunResult:
    """Runs a training; writes runs/NAME with checkpoints, metrics, LR log and curves.

    Nothing is printed (progress bars aside, with ``settings.progress``): the run's lines (what
    it trains on, each epoch's losses and mIoU, the best epoch) go to ``report``, from the main
    process only under torchrun.

    Args:
        settings: the run's settings (ignored when resuming, except ``progress``).
        resume: a run folder to continue from its last.pt, exactly where it stopped.
        report: called with each line (tseg-train passes ``click.echo``); default: INFO
            records of the ``tseg`` logger.

    Raises:
        TsegError: bad data or settings (one line, no traceback in the CLI).
    """
    payload = None
    if resume is not None:
        payload = load_resume_checkpoint(resume)
        saved = resume_settings(payload, source=Path(resume) / "last.pt")
        settings = replace(saved, progress=settings.progress)
    ctx = init_distributed(settings.device)
    try:
        report = report or logger.info
        return _run(settings, ctx, resume=Path(resume) if resume else None, payload=payload, report=report)
    finally:
        shutdown_distributed()


def _run(settings: TrainSettings, ctx: DistContext, *, resume: Path | None, payload: dict | None,
         report: Callable[[str], None]) -> RunResult:
    root, train_coco, val_coco = _load_splits(settings, ctx)
    spec = _model_spec(settings, train_coco.classes)
    model = _build_model(settings, spec, ctx)
    optimizer = build_optimizer(settings, model)
    scaler = torch.amp.GradScaler("cuda") if settings.amp and ctx.device.type == "cuda" else None
    train_set, val_set = build_datasets(settings, train_coco, val_coco)
    sampler, train_loader, val_loader = build_loaders(settings, train_set, val_set, ctx)
    schedule = build_schedule(settings, len(train_loader))
    weights = parse_class_weights(settings.class_weights, len(spec.classes), label_counts(train_set, len(spec.classes)))
    run_dir, resolved = _prepare_run(settings, root, resume, ctx)
    log = RunLog(run_dir, spec.classes, tensorboard=settings.tensorboard) if ctx.is_main else None
    loop = _restore(payload, model, optimizer, scaler, log, source=run_dir / "last.pt") if payload else _Loop()
    if loop.start_epoch > settings.epochs:
        raise TsegError(f"{run_dir} already finished its {settings.epochs} epochs; nothing to resume")
    if ctx.is_main:
        report(
            f"run {run_dir}: {settings.model}, {len(train_coco)} train / {len(val_coco)} val images from"
            f" {root}, {len(spec.classes)} classes, {ctx.world_size} process(es) on {ctx.device}"
            + (f", resuming at epoch {loop.start_epoch}" if payload else "")
        )
    parts = dict(
        model=model,
        optimizer=optimizer,
        scaler=scaler,
        schedule=schedule,
        sampler=sampler,
        loaders=(train_loader, val_loader),
        train_set=train_set,
        log=log,
        spec=spec,
        loss=LossSpec(weight=weights, ignore_index=settings.ignore_index),
        precision=Precision(amp=settings.amp, channels_last=settings.channels_last),
        report=report,
    )
    scores = _fit(settings, ctx, loop, run_dir=run_dir, resolved=resolved, **parts)
    if ctx.is_main:
        log.close()
        _finish(run_dir, loop, scores, spec, report=report)
    return RunResult(run_dir, loop.best_miou, loop.best_epoch, scores, spec.classes)


def _fit(
    settings,
    ctx,
    loop: _Loop,
    *,
    model,
    optimizer,
    scaler,
    schedule,
    sampler,
    loaders,
    train_set,
    log,
    spec,
    loss,
    precision,
    run_dir,
    resolved,
    report,
) -> SegmentationScores:
    """The epoch loop: train, validate, log, checkpoint (last always, best on a new best mIoU)."""
    train_loader, val_loader = loaders
    num_classes, show = len(spec.classes), settings.progress and ctx.is_main
    scores = None
    for epoch in range(loop.start_epoch, settings.epochs + 1):
        start = time.perf_counter()
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        trained = train_one_epoch(
            model,
            train_loader,
            optimizer,
            schedule=schedule,
            step=loop.step,
            loss_spec=loss,
            precision=precision,
            accumulate=settings.accumulate,
            num_classes=num_classes,
            ctx=ctx,
            epoch=epoch,
            on_step=log.log_step if log else (lambda step, lr: None),
            scaler=scaler,
            progress=show,
        )
        loop.step = trained.step
        val = evaluate(
            model,
            val_loader,
            num_classes=num_classes,
            loss_spec=loss,
            precision=precision,
            ctx=ctx,
            progress=show,
        )
        scores = val.scores
        metrics = {
            "epoch": epoch,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": trained.loss,
            "val_loss": val.loss,
            "train_miou": trained.scores.miou,
            "val_miou": val.scores.miou,
            "val_miou_at_train_size": val.scores_at_train_size.miou,
            "val_pixel_accuracy": val.scores.pixel_accuracy,
            "seconds": time.perf_counter() - start,
        }
        is_best = val.scores.miou > loop.best_miou
        if is_best:
            loop.best_miou, loop.best_epoch = val.scores.miou, epoch
        if ctx.is_main:
            log.log_epoch(metrics, val.scores)
            _checkpoint(run_dir, model, spec, metrics, resolved, optimizer, scaler, loop, epoch, is_best, log)
            log.flush()
            report(
                f"epoch {epoch}/{settings.epochs}  train loss {trained.loss:.4f}  val loss {val.loss:.4f}"
                f"  train mIoU {trained.scores.miou:.4f}  val mIoU {val.scores.miou:.4f}"
                f"  ({metrics['seconds']:.0f} s)"
            )
    return scores


def _checkpoint(
    run_dir, model, spec, metrics, resolved, optimizer, scaler, loop: _Loop, epoch, is_best, log: RunLog
) -> None:
    """last.pt (with everything --resume needs, the log rows included) and best.pt on a new best."""
    state = training_state(
        optimizer=optimizer,
        scaler=scaler,
        step=loop.step,
        best_miou=loop.best_miou,
        best_epoch=loop.best_epoch,
    )
    state["log"] = log.state()
    common = dict(spec=spec, model=model, epoch=epoch, metrics=metrics, settings=resolved, tseg_version=__version__)
    save_checkpoint(run_dir / "last.pt", extra=state, **common)
    if is_best:
        save_checkpoint(run_dir / "best.pt", **common)


def _finish(run_dir: Path, loop: _Loop, scores: SegmentationScores | None, spec: ModelSpec, *,
            report: Callable[[str], None]) -> None:
    from tseg.train.plots import plot_runs

    plot_runs([run_dir], out=run_dir / "plots")
    report(f"best val mIoU {loop.best_miou:.4f} at epoch {loop.best_epoch}; curves in {run_dir / 'plots'}")
    if scores is not None:
        report("last epoch: " + format_scores(scores, spec.classes))
