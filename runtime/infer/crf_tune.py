"""Grid search of the CRF's kernel widths and weights on a validation split."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from tqdm import tqdm

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.errors import TsegError
from tseg.runtime.segment.refine import CrfParams
from tseg.runtime.segment.segmenter import Segmenter
from tseg.runtime.segment.upsample import upsample_labels

# Around pydensecrf's defaults and DeepLab's (appearance kernel dominates the gain).
DEFAULT_GRID: Mapping[str, Sequence[float]] = {
    "bilateral_sxy": (20.0, 50.0, 80.0),
    "bilateral_srgb": (5.0, 13.0),
    "bilateral_compat": (4.0, 10.0),
    "gaussian_compat": (1.0, 3.0),
}


@dataclass(frozen=True)
class TuneResult:
    """The no-CRF baseline, every setting tried with its mIoU, and the best setting."""

    baseline_miou: float
    trials: tuple[tuple[CrfParams, float], ...]
    num_images: int

    @property
    def best(self) -> tuple[CrfParams, float]:
        return max(self.trials, key=lambda trial: trial[1])

    def table(self) -> str:
        """The mIoU table: no CRF first, then each setting, best marked."""
        best_params, _ = self.best
        keys = list(DEFAULT_GRID)
        lines = [
            f"{'setting':<10}" + "".join(f"{k:>18}" for k in keys) + f"{'mIoU':>9}",
            f"{'no CRF':<10}" + " " * 18 * len(keys) + f"{self.baseline_miou:9.4f}",
        ]
        for params, miou in self.trials:
            mark = "  <- best" if params == best_params else ""
            values = "".join(f"{getattr(params, k):18g}" for k in keys)
            lines.append(f"{'CRF':<10}{values}{miou:9.4f}{mark}")
        return "\n".join(lines)


def grid_settings(base: CrfParams, grid: Mapping[str, Sequence[float]]) -> list[CrfParams]:
    """Every combination of the grid's values, on top of ``base``."""
    unknown = set(grid) - set(CrfParams.__dataclass_fields__)
    if unknown:
        raise TsegError(f"unknown CRF parameters in the grid: {sorted(unknown)}")
    names = list(grid)
    return [
        replace(base, **dict(zip(names, combo, strict=True)))
        for combo in itertools.product(*(grid[n] for n in names))
    ]


def tune_crf(
    json_path: str | Path,
    *,
    data_root: str | Path | None,
    segmenter: Segmenter,
    base: CrfParams,
    grid: Mapping[str, Sequence[float]] = DEFAULT_GRID,
    max_images: int = 20,
    progress: bool = True,
) -> TuneResult:
    """Scores every grid setting on up to ``max_images`` images of a split.

    The model runs once per image; each setting then refines the same logits, as
    inference does (:meth:`CrfParams.refine_logits`; the baseline is
    :func:`~tseg.runtime.segment.upsample.upsample_labels`).

    Args:
        json_path: an annotated COCO split (e.g. val.json).
        data_root: folder the file names are relative to (default: the JSON's folder).
        segmenter: the model.
        base: parameters not in the grid (e.g. iterations) come from here; its device "auto" is
            resolved for the segmenter's model (:meth:`CrfParams.resolve_device`).
        grid: parameter name -> values to try.
        max_images: the first images of the split to use (the search is costly).
        progress: show a progress bar.
    """
    dataset = CocoDataset(json_path, root=data_root)
    if not dataset.has_annotations:
        raise TsegError(f"cannot tune the CRF: {dataset.json_path} has no annotations")
    settings = grid_settings(base.resolve_device(segmenter.device), grid)
    num_classes = segmenter.metadata.num_classes
    baseline = ConfusionMatrix(num_classes)
    matrices = [ConfusionMatrix(num_classes) for _ in settings]
    count = min(max_images, len(dataset))
    with tqdm(total=count * len(settings), desc="crf-tune", unit="crf", disable=not progress) as bar:
        for index in range(count):
            image, truth = dataset.read_image(index), dataset.label_map(index)
            logits = segmenter.logits(image)
            baseline.update(truth, upsample_labels(logits, image.shape[:2]))
            for params, matrix in zip(settings, matrices, strict=True):
                matrix.update(truth, params.refine_logits(logits, image))
                bar.update()
    trials = tuple((p, m.compute().miou) for p, m in zip(settings, matrices, strict=True))
    return TuneResult(baseline.compute().miou, trials, count)
