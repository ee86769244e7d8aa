"""What a report gathers while tseg-infer runs: each image's scores (streamed to a CSV) and
small copies of the worst and the best images, so memory stays bounded on any split.

The collector is a sink of the pipeline's writer (:mod:`tseg.runtime.infer.run`): it is called
once per segmented image, in input order, on one thread.
"""

from __future__ import annotations

import csv
import heapq
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.files import TempFile

PER_IMAGE_FILE = "per_image.csv"
THUMBNAIL_SIDE = 480  # the longer side of the kept copies of the chosen images, in pixels
CSV_COLUMNS = ("index", "file_name", "label_png", "height", "width", "miou", "pixel_accuracy",
               "crf_miou", "crf_pixel_accuracy")


def image_scores(truth: np.ndarray, prediction: np.ndarray, *, num_classes: int) -> tuple[float, float]:
    """One image's (mIoU, pixel accuracy): the mean IoU over the classes in its truth or prediction.

    Args:
        truth: (H, W) integer labels in [0, num_classes).
        prediction: (H, W) integer labels in [0, num_classes).
        num_classes: C.
    """
    matrix = ConfusionMatrix(num_classes)
    matrix.update(truth, prediction)
    scores = matrix.compute()
    return scores.miou, scores.pixel_accuracy


@dataclass(frozen=True)
class ImageRow:
    """One image's line of the per-image table (``crf_*`` are None without a CRF)."""

    index: int
    file_name: str
    label_png: str
    height: int
    width: int
    miou: float
    pixel_accuracy: float
    crf_miou: float | None = None
    crf_pixel_accuracy: float | None = None

    @property
    def final_miou(self) -> float:
        """The mIoU of the labels tseg-infer wrote (after the CRF when one ran)."""
        return self.miou if self.crf_miou is None else self.crf_miou

    def cells(self) -> list[str]:
        return [_cell(getattr(self, name)) for name in CSV_COLUMNS]

    @classmethod
    def from_cells(cls, cells: dict[str, str]) -> ImageRow:
        def number(name: str) -> float | None:
            return float(cells[name]) if cells[name] != "" else None

        return cls(int(cells["index"]), cells["file_name"], cells["label_png"], int(cells["height"]),
                   int(cells["width"]), number("miou"), number("pixel_accuracy"), number("crf_miou"),
                   number("crf_pixel_accuracy"))


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)


@dataclass(frozen=True)
class Kept:
    """A chosen image, shrunk to at most :data:`THUMBNAIL_SIDE` on its longer side.

    Attributes:
        row: its scores.
        image: (h, w, 3) uint8 photo.
        truth: (h, w) uint8 labels (nearest neighbour).
        plain: (h, w) uint8 labels of the model alone.
        refined: (h, w) uint8 labels after the CRF, or None without one.
    """

    row: ImageRow
    image: np.ndarray
    truth: np.ndarray
    plain: np.ndarray
    refined: np.ndarray | None


def shrink(array: np.ndarray, *, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """(H, W, 3) or (H, W) uint8 at most ``side`` on its longer side (labels: nearest, photos: bilinear)."""
    height, width = array.shape[:2]
    scale = side / max(height, width)
    if scale >= 1:
        return array
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    method = Image.Resampling.BILINEAR if array.ndim == 3 else Image.Resampling.NEAREST
    return np.asarray(Image.fromarray(array).resize(size, method))


class ReportCollector:
    """Scores each image, streams its row to ``folder/per_image.csv`` and keeps the ``count``
    worst and best images (by the mIoU of the labels written).

    Args:
        folder: the report folder (the CSV is committed there by :meth:`finish`).
        num_classes: C.
        crf: the run refines with a CRF (results carry ``plain`` labels too).
        count: images kept at each end; 0 keeps none.
        names: each job index's COCO file name.
        label_pngs: each job index's label PNG, as the report links to it.
    """

    def __init__(self, *, folder: Path, num_classes: int, crf: bool, count: int, names: list[str],
                 label_pngs: list[str]) -> None:
        self.num_classes, self.crf, self.count = num_classes, crf, count
        self.names, self.label_pngs = names, label_pngs
        self.worst: list[tuple[float, int, Kept]] = []  # max-heap by mIoU via negated keys
        self.best: list[tuple[float, int, Kept]] = []  # min-heap by mIoU
        self.rows = 0
        self._temp = TempFile(Path(folder) / PER_IMAGE_FILE)
        self._handle = open(self._temp.temp, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._handle)
        self._csv.writerow(CSV_COLUMNS)

    def __call__(self, result) -> None:
        """Takes one :class:`~tseg.runtime.infer.stages.Result` (with ``truth``; ``image`` when count > 0)."""
        plain = result.plain if result.plain is not None else result.labels
        miou, accuracy = image_scores(result.truth, plain, num_classes=self.num_classes)
        crf_scores = image_scores(result.truth, result.labels, num_classes=self.num_classes) if self.crf else None
        height, width = result.truth.shape
        row = ImageRow(result.index, self.names[result.index], self.label_pngs[result.index], height, width,
                       miou, accuracy, *(crf_scores or (None, None)))
        self._csv.writerow(row.cells())
        self.rows += 1
        if self.count and result.image is not None and not np.isnan(row.final_miou):
            self._keep(row, result)

    def _keep(self, row: ImageRow, result) -> None:
        key = row.final_miou
        worst_full, best_full = len(self.worst) >= self.count, len(self.best) >= self.count
        if worst_full and -self.worst[0][0] <= key and best_full and self.best[0][0] >= key:
            return  # neither among the worst nor the best so far: nothing to shrink
        refined = result.labels if self.crf else None
        plain = result.plain if result.plain is not None else result.labels
        kept = Kept(row, shrink(result.image), shrink(_as_u8(result.truth)), shrink(_as_u8(plain)),
                    None if refined is None else shrink(_as_u8(refined)))
        _push(self.worst, (-key, -row.index, kept), self.count)
        _push(self.best, (key, -row.index, kept), self.count)

    def chosen(self) -> tuple[list[Kept], list[Kept]]:
        """(worst first, best first): the kept images, ties broken by input order."""
        worst = [k for _, _, k in sorted(self.worst, key=lambda e: (-e[0], -e[1]))]
        best = [k for _, _, k in sorted(self.best, key=lambda e: (-e[0], -e[1]))]
        return worst, best

    def finish(self) -> Path:
        """Commits the CSV; returns its path."""
        self._handle.close()
        return self._temp.commit()

    def discard(self) -> None:
        """Drops the CSV (a run that stopped)."""
        self._handle.close()
        self._temp.discard()


def _as_u8(labels: np.ndarray) -> np.ndarray:
    return labels.astype(np.uint8, copy=False)


def _push(heap: list, entry: tuple, count: int) -> None:
    if len(heap) < count:
        heapq.heappush(heap, entry)
    elif entry[:2] > heap[0][:2]:
        heapq.heapreplace(heap, entry)

