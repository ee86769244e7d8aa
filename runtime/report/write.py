"""Writing the report folder: checks before any work, the pictures, report.json and index.html.

Layout of ``DIR``::

    index.html        the page (written last: a folder with it is a complete report)
    report.json       the numbers the page shows (split scores, per-class IoU, confusion matrices, settings),
                      the classes and their colours, and where the split is (tseg-report reads it)
    per_image.csv     every image's scores (streamed during the run)
    pictures/         worst-N.jpg, best-N.jpg: photo | truth | prediction | after the CRF
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np

from tseg.runtime.data.metrics import SegmentationScores
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.paths import describe
from tseg.runtime.report.collect import PER_IMAGE_FILE, Kept, ReportCollector
from tseg.runtime.report.page import GENERATOR, PageContent, render
from tseg.runtime.report.pictures import jpeg_bytes, panel

INDEX_FILE = "index.html"
REPORT_FILE = "report.json"
PICTURES = "pictures"
MAX_REPORT_IMAGES = 100  # worst and best images each


@dataclass(frozen=True)
class ReportSettings:
    """Where and what the report shows.

    Attributes:
        folder: the report folder (new, empty, or an earlier tseg report, which is replaced).
        images: how many of the worst and of the best images get pictures (0..MAX_REPORT_IMAGES).
        command: the command line shown on the page, or None.
    """

    folder: Path
    images: int = 6
    command: str | None = None

    def __post_init__(self) -> None:
        count = self.images
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_REPORT_IMAGES:
            raise TsegError(f"images must be an integer in 0..{MAX_REPORT_IMAGES}, got {count!r}",
                            parameter="report_images")


def is_report(folder: Path, *, generator: str = GENERATOR) -> bool:
    """True when ``folder/index.html`` is a page tseg wrote with ``generator`` (its tag, in its first 1 KiB).

    Args:
        folder: the folder to look in.
        generator: the kind of page: :data:`GENERATOR` (tseg-infer --report) or
            :data:`~tseg.runtime.report.page.COMPARE_GENERATOR` (tseg-report).
    """
    index = Path(folder) / INDEX_FILE
    if not index.is_file() or index.is_symlink():
        return False
    with open(index, "rb") as handle:
        head = handle.read(1024)
    return f'<meta name="generator" content="{generator}">'.encode() in head


def check_report_folder(folder: Path, *, parameter: str = "report", generator: str = GENERATOR,
                        what: str = "tseg report") -> None:
    """Refuses, before any work, a folder that holds something other than a page tseg may replace.

    Args:
        folder: where the page goes (missing, empty, or an earlier page of the same kind).
        parameter: the option that named it, for the error ("report"; tseg-report's "out").
        generator: the kind of page that may be replaced (see :func:`is_report`).
        what: that kind in words, for the error.

    Raises:
        TsegError: ``folder`` is not a folder, or holds files and no page of that kind.
    """
    kind = describe(folder)
    if kind is None:
        return
    if not Path(folder).is_dir():
        raise TsegError(f"{parameter} {folder} is {kind}: need a folder", parameter=parameter)
    if any(Path(folder).iterdir()) and not is_report(folder, generator=generator):
        raise TsegError(
            f"{parameter} {folder} exists and is not a {what} (no index.html written by tseg):"
            " choose a new folder or move it away",
            parameter=parameter,
        )


def clear_pictures(folder: Path, *, prefixes: tuple[str, ...] = ("worst-", "best-")) -> None:
    """Removes an earlier page's pictures: only the .jpg files under ``folder/pictures`` whose names
    start with one of ``prefixes`` (the names tseg gives them), nothing else."""
    pictures = folder / PICTURES
    if not pictures.is_dir():
        return
    for path in pictures.iterdir():
        if path.suffix == ".jpg" and path.name.startswith(prefixes) and path.is_file() and not path.is_symlink():
            path.unlink()


def _picture(folder: Path, kind: str, kept: Kept, classes: Sequence[str], palette) -> str:
    layers = [("truth", kept.truth), ("prediction", kept.plain), ("after the CRF", kept.refined)]
    relative = f"{PICTURES}/{kind}-{kept.row.index}.jpg"
    atomic_write_bytes(folder / relative, jpeg_bytes(panel(kept.image, layers, classes=classes, palette=palette)))
    return relative


def split_json(json_path: Path, root: Path) -> dict[str, str]:
    """Where a split is, as report.json records it (absolute paths: tseg-report may run elsewhere)."""
    return {"json": str(Path(json_path).absolute()), "root": str(Path(root).absolute())}


def _scores_json(scores: SegmentationScores | None, matrix, classes: Sequence[str]) -> dict | None:
    if scores is None:
        return None
    return {"miou": scores.miou, "pixel_accuracy": scores.pixel_accuracy,
            "iou": dict(zip(classes, scores.iou, strict=True)),
            "confusion": np.asarray(matrix).tolist()}


def write_report(settings: ReportSettings, *, collector: ReportCollector, title: str,
                 facts: Sequence[tuple[str, str]], classes: Sequence[str], palette: Sequence[Sequence[int]],
                 scores: SegmentationScores, matrix: np.ndarray, crf_scores: SegmentationScores | None = None,
                 crf_matrix: np.ndarray | None = None, split: dict[str, str] | None = None) -> Path:
    """Writes the report after a run (the collector's CSV is committed here).

    Args:
        settings: the folder and the number of images shown.
        collector: what the run gathered per image.
        title: the page's heading.
        facts: (name, value) pairs shown as the run's settings.
        classes, palette: the model's class names and colours.
        scores, matrix: the split's scores and (C, C) confusion counts of the model alone.
        crf_scores, crf_matrix: the same after the CRF, or None.
        split: where the split is (:func:`split_json`), or None.

    Returns:
        The page (``folder/index.html``).
    """
    folder = Path(settings.folder)
    rows_csv = collector.finish()
    clear_pictures(folder)
    worst, best = collector.chosen()
    shown_worst = [(k.row, _picture(folder, "worst", k, classes, palette)) for k in worst]
    shown_best = [(k.row, _picture(folder, "best", k, classes, palette)) for k in best]
    numbers = {
        "title": title,
        "settings": dict(facts),
        "images": collector.rows,
        "classes": list(classes),
        "palette": [[int(v) for v in colour] for colour in palette],
        "split": split,
        "model_alone": _scores_json(scores, matrix, classes),
        "after_crf": _scores_json(crf_scores, crf_matrix, classes),
        "worst": [row.index for row, _ in shown_worst],
        "best": [row.index for row, _ in shown_best],
    }
    atomic_write_bytes(folder / REPORT_FILE, json.dumps(numbers, indent=2).encode())
    content = PageContent(title=title, facts=facts, classes=classes, palette=palette, scores=scores,
                          crf_scores=crf_scores, matrix=matrix, crf_matrix=crf_matrix, worst=shown_worst,
                          best=shown_best, rows_csv=rows_csv, total_rows=collector.rows)
    index = folder / INDEX_FILE
    atomic_write_bytes(index, render(content).encode())
    return index


def link_from(folder: Path, target: Path) -> str:
    """``target`` as a link from a page in ``folder`` (relative, with forward slashes)."""
    return quote(Path(os.path.relpath(Path(target).absolute(), Path(folder).absolute())).as_posix())


__all__ = ["PER_IMAGE_FILE", "ReportSettings", "check_report_folder", "clear_pictures", "is_report", "link_from",
           "split_json", "write_report"]
