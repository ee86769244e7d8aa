"""Segmentation metrics from a confusion matrix (NumPy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SegmentationScores:
    """Scores computed from one confusion matrix over a whole dataset.

    Attributes:
        miou: mean IoU over classes present in truth or prediction (nanmean).
        iou: per-class IoU, NaN for classes absent from both.
        pixel_accuracy: fraction of valid pixels labelled correctly.
    """

    miou: float
    iou: tuple[float, ...]
    pixel_accuracy: float

    def per_class(self, class_names: Sequence[str]) -> dict[str, float]:
        """Per-class IoU keyed by class name."""
        return dict(zip(class_names, self.iou, strict=True))


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix: rows are truth, columns prediction.

    Args:
        num_classes: C.
        ignore_index: truth value excluded from the counts (e.g. 255), or None.
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Adds one image (or batch): integer arrays of the same shape."""
        if truth.shape != prediction.shape:
            raise ValueError(f"truth and prediction shapes differ: {truth.shape} vs {prediction.shape}")
        truth = truth.reshape(-1).astype(np.int64)
        prediction = prediction.reshape(-1).astype(np.int64)
        valid = (truth >= 0) & (truth < self.num_classes)
        if self.ignore_index is not None:
            valid &= truth != self.ignore_index
        index = self.num_classes * truth[valid] + prediction[valid]
        self.matrix += np.bincount(index, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def merge(self, other: ConfusionMatrix) -> None:
        """Adds another matrix's counts (e.g. from another worker)."""
        self.matrix += other.matrix

    def compute(self) -> SegmentationScores:
        """mIoU (nanmean over classes present), per-class IoU and pixel accuracy."""
        matrix = self.matrix.astype(np.float64)
        true_positive = np.diag(matrix)
        union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, true_positive / union, np.nan)
        total = matrix.sum()
        present = ~np.isnan(iou)
        return SegmentationScores(
            miou=float(iou[present].mean()) if present.any() else float("nan"),
            iou=tuple(float(v) for v in iou),
            pixel_accuracy=float(true_positive.sum() / total) if total else float("nan"),
        )


def format_scores(scores: SegmentationScores, class_names: Sequence[str]) -> str:
    """A small text table: mIoU, pixel accuracy, then IoU per class."""
    lines = [f"mIoU {scores.miou:.4f}   pixel accuracy {scores.pixel_accuracy:.4f}"]
    width = max(len(name) for name in class_names)
    for name, iou in zip(class_names, scores.iou, strict=True):
        shown = "   -  " if np.isnan(iou) else f"{iou:.4f}"
        lines.append(f"  {name:<{width}}  {shown}")
    return "\n".join(lines)
