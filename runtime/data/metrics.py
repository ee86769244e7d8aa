"""Segmentation metrics from a confusion matrix (NumPy only)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tseg.runtime.errors import TsegError


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
        if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise TsegError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if ignore_index is not None and (
            isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer))
        ):
            raise TsegError(f"ignore_index must be an integer or None, got {ignore_index!r}")
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.matrix = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def update(self, truth: np.ndarray, prediction: np.ndarray) -> None:
        """Adds one image (or batch).

        Args:
            truth: integer labels of any shape, e.g. (H, W) or (N, H, W); each in
                [0, C) or equal to ``ignore_index`` (those pixels are not counted).
            prediction: integer labels of the same shape, each in [0, C).

        Raises:
            TsegError: the shapes differ, an array is not of an integer type, or a
                label is not a class (a silently dropped label would skew the scores).
        """
        truth, prediction = np.asarray(truth), np.asarray(prediction)
        for name, array in (("truth", truth), ("prediction", prediction)):
            if array.dtype.kind not in "iu":
                raise TsegError(f"need integer {name} labels, got an array of {array.dtype}")
        if truth.shape != prediction.shape:
            raise TsegError(f"truth and prediction shapes differ: {truth.shape} vs {prediction.shape}")
        if truth.size == 0:
            return
        truth, prediction = truth.reshape(-1), prediction.reshape(-1)
        counted = truth != self.ignore_index if self.ignore_index is not None else slice(None)
        self._check_range("truth", truth[counted])
        self._check_range("prediction", prediction)
        truth = truth[counted].astype(np.int64, copy=False)
        index = self.num_classes * truth + prediction[counted].astype(np.int64, copy=False)
        self.matrix += np.bincount(index, minlength=self.num_classes**2).reshape(
            self.num_classes, self.num_classes
        )

    def _check_range(self, name: str, labels: np.ndarray) -> None:
        if labels.size == 0 or (labels.min() >= 0 and labels.max() < self.num_classes):
            return
        bad = labels[(labels < 0) | (labels >= self.num_classes)]
        shown = ", ".join(str(v) for v in np.unique(bad)[:5])
        ignore = "" if name != "truth" or self.ignore_index is None else f" (or the ignore index {self.ignore_index})"
        raise TsegError(
            f"{name} label(s) {shown} are not classes: need labels in [0, {self.num_classes}){ignore},"
            f" {bad.size} pixel(s) are out of range"
        )

    def merge(self, other: ConfusionMatrix) -> None:
        """Adds another matrix's counts (e.g. from another worker)."""
        if other.matrix.shape != self.matrix.shape:
            raise TsegError(
                f"cannot merge a {other.num_classes}-class confusion matrix into a {self.num_classes}-class one"
            )
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
