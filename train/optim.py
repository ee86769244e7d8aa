"""Optimizer, LR schedule and loss weights from the run settings."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from tseg.runtime.errors import TsegError
from tseg.train.schedules import LrSchedule
from tseg.train.settings import OPTIMIZERS, TrainSettings, check_class_weights


def build_optimizer(settings: TrainSettings, model: nn.Module) -> torch.optim.Optimizer:
    """Adam, AdamW or SGD (with momentum) over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    name, lr, decay = settings.optimizer, settings.lr, settings.weight_decay
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=settings.momentum, weight_decay=decay)
    raise TsegError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def steps_per_epoch(settings: TrainSettings, batches_per_epoch: int) -> int:
    """Optimizer steps per epoch: micro-batches grouped by ``accumulate``."""
    return math.ceil(batches_per_epoch / settings.accumulate)


def build_schedule(settings: TrainSettings, batches_per_epoch: int) -> LrSchedule:
    """The run's LR schedule over all optimizer steps.

    Raises:
        TsegError: the warm-up is not shorter than the training.
    """
    per_epoch = steps_per_epoch(settings, batches_per_epoch)
    total = per_epoch * settings.epochs
    warmup = settings.warmup_steps or round(settings.warmup_epochs * per_epoch)
    if warmup >= total:
        raise TsegError(
            f"warm-up of {warmup} steps is not shorter than the training ({total} steps ="
            f" {settings.epochs} epochs x {per_epoch} steps)"
        )
    return LrSchedule(
        name=settings.lr_schedule,
        peak_lr=settings.lr,
        total_steps=total,
        warmup_steps=warmup,
        min_lr=settings.min_lr,
    )


def parse_class_weights(spec: str, num_classes: int, label_counts) -> torch.Tensor | None:
    """Cross-entropy class weights from ``class_weights``.

    Args:
        spec: "none", "balanced" (median-frequency balancing) or comma-separated floats.
        num_classes: C.
        label_counts: a callable returning (C,) pixel counts over the training split
            (only called for "balanced").

    Returns:
        (C,) float32 weights, or None for unweighted.
    """
    if spec == "none":
        return None
    if spec == "balanced":
        counts = np.asarray(label_counts(), dtype=np.float64)
        freq = counts / max(counts.sum(), 1.0)
        present = freq > 0
        weights = np.zeros(num_classes)
        weights[present] = np.median(freq[present]) / freq[present]
        return torch.tensor(weights, dtype=torch.float32)
    values = check_class_weights(spec)
    if len(values) != num_classes:
        raise TsegError(
            f"class_weights needs 'none', 'balanced' or {num_classes} non-negative comma-separated"
            f" numbers (one per class), got {len(values)}: {spec!r}",
            parameter="class_weights",
        )
    return torch.tensor(values, dtype=torch.float32)
