"""One epoch of training, and evaluation at the dataset's own image size."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tseg.runtime.data.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import argmax_classes, labels_from_scores
from tseg.train.distributed import DistContext
from tseg.train.schedules import LrSchedule

AUX_WEIGHT = 0.5  # torchvision's reference weight for the auxiliary head


@dataclass(frozen=True)
class LossSpec:
    """Cross-entropy options: per-class weights (C,) or None, and the ignored label."""

    weight: torch.Tensor | None = None
    ignore_index: int = 255


@dataclass(frozen=True)
class Precision:
    """Autocast settings: bf16 on the CPU, fp16 with a GradScaler on CUDA."""

    amp: bool
    channels_last: bool

    def autocast(self, device: torch.device):
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
        return torch.autocast(device_type=device.type, dtype=dtype, enabled=self.amp)


def segmentation_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor, spec: LossSpec) -> torch.Tensor:
    """Cross-entropy on "out", plus AUX_WEIGHT times that of "aux" when present.

    Args:
        outputs: {"out": (N, C, H, W)[, "aux": (N, C, H, W)]}.
        labels: (N, H, W) int64.
        spec: class weights and ignored label.
    """
    weight = spec.weight.to(labels.device) if spec.weight is not None else None

    def ce(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits.float(), labels, weight=weight, ignore_index=spec.ignore_index)

    loss = ce(outputs["out"])
    if "aux" in outputs:
        loss = loss + AUX_WEIGHT * ce(outputs["aux"])
    return loss


@dataclass(frozen=True)
class EpochResult:
    """Mean loss per image, scores at the training size, and the optimizer step reached."""

    loss: float
    scores: SegmentationScores
    step: int


def _to_device(images, labels, ctx: DistContext, precision: Precision):
    fmt = torch.channels_last if precision.channels_last else torch.contiguous_format
    images = images.to(ctx.device, non_blocking=True).contiguous(memory_format=fmt)
    return images, labels.to(ctx.device, non_blocking=True)


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    schedule: LrSchedule,
    step: int,
    loss_spec: LossSpec,
    precision: Precision,
    accumulate: int,
    num_classes: int,
    ctx: DistContext,
    epoch: int,
    on_step: Callable[[int, float], None],
    scaler=None,
    progress: bool = True,
) -> EpochResult:
    """Trains one pass over ``loader``, setting the LR of every optimizer step from ``schedule``.

    Raises:
        TsegError: the loss became NaN or infinite (learning rate too high?).
    """
    model.train()
    confusion = ConfusionMatrix(num_classes, ignore_index=loss_spec.ignore_index)
    counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=ctx.device)
    total, count, batches = 0.0, 0, len(loader)
    bar = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", disable=not progress, leave=False)
    for index, (images, labels, _) in enumerate(bar):
        images, labels = _to_device(images, labels, ctx, precision)
        boundary = (index + 1) % accumulate == 0 or index + 1 == batches
        sync = contextlib.nullcontext() if boundary or not ctx.distributed else model.no_sync()
        with sync:
            with precision.autocast(ctx.device):
                outputs = model(images)
            loss = segmentation_loss(outputs, labels, loss_spec)
            if not math.isfinite(loss.item()):
                raise TsegError(
                    f"training diverged at epoch {epoch}: loss is {loss.item()}; lower the learning rate (lr)"
                )
            scaled = loss / accumulate
            (scaler.scale(scaled) if scaler else scaled).backward()
        if boundary:
            step = _optimizer_step(optimizer, scaler, schedule, step, on_step)
        total += loss.item() * images.shape[0]
        count += images.shape[0]
        counts += _confusion_counts(labels, outputs["out"].detach().argmax(1), num_classes, loss_spec.ignore_index)
        bar.set_postfix(loss=f"{total / count:.4f}")
    total, count = ctx.sum([total, count])
    confusion.matrix = ctx.sum_array(counts.reshape(num_classes, num_classes).cpu().numpy())
    return EpochResult(loss=total / max(count, 1), scores=confusion.compute(), step=step)


def _confusion_counts(labels: torch.Tensor, preds: torch.Tensor, num_classes: int, ignore_index: int) -> torch.Tensor:
    """Flattened (C * C) confusion counts of one batch, computed where the tensors live (no host copy)."""
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    # Invalid pixels go to one extra bin instead of being masked out (no data-dependent shapes).
    index = torch.where(valid, labels * num_classes + preds, num_classes * num_classes)
    return torch.bincount(index.flatten(), minlength=num_classes * num_classes + 1)[:-1]


def _optimizer_step(optimizer, scaler, schedule: LrSchedule, step: int, on_step) -> int:
    lr = schedule(step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    on_step(step, lr)
    return step + 1


@dataclass(frozen=True)
class EvalResult:
    """Validation loss per image, scores at each image's own size and at the training size."""

    loss: float
    scores: SegmentationScores
    scores_at_train_size: SegmentationScores


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader,
    *,
    num_classes: int,
    loss_spec: LossSpec,
    precision: Precision,
    ctx: DistContext,
    progress: bool = True,
) -> EvalResult:
    """Validation loss and scores; full-size scores use the runtime's upsampling.

    The logits are upsampled to each full label map by the function the runtime
    uses, so these scores are what ``tseg-infer --eval`` reports for the exported
    model. Under torchrun each process scores its shard and the counts are summed.
    """
    model.eval()
    full = ConfusionMatrix(num_classes, ignore_index=loss_spec.ignore_index)
    small = ConfusionMatrix(num_classes, ignore_index=loss_spec.ignore_index)
    total, count = 0.0, 0
    for images, labels, full_labels in tqdm(loader, desc="val", unit="batch", disable=not progress, leave=False):
        images, labels = _to_device(images, labels, ctx, precision)
        with precision.autocast(ctx.device):
            outputs = model(images)
        total += segmentation_loss(outputs, labels, loss_spec).item() * images.shape[0]
        count += images.shape[0]
        logits = outputs["out"].float().cpu().numpy()
        small.update(labels.cpu().numpy(), argmax_classes(logits.swapaxes(0, 1), strict=False))  # (C, N, h, w)
        for scores, truth in zip(logits, full_labels, strict=True):
            full.update(truth.numpy(), labels_from_scores(scores, truth.shape))
    total, count = ctx.sum([total, count])
    full.matrix, small.matrix = ctx.sum_array(full.matrix), ctx.sum_array(small.matrix)
    return EvalResult(total / max(count, 1), full.compute(), small.compute())
