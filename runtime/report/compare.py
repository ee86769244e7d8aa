"""tseg-report's numbers: two evaluations of the same split (A and B) paired image by image.

Both reports must cover the same images (by file name and size) with the same classes, scored
against the same truth (each class's pixel count in the truth, the confusion matrices' row sums,
must agree): anything else is refused with one line, never compared on a part. Every score
compared is that of the labels each run wrote (after the CRF where it ran), and every
difference is B minus A.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.paths import identity
from tseg.runtime.report.collect import ImageRow
from tseg.runtime.report.read import ReportData
from tseg.runtime.report.write import MAX_REPORT_IMAGES


def final_accuracy(row: ImageRow) -> float:
    """The pixel accuracy of the labels a run wrote (after the CRF when one ran)."""
    return row.pixel_accuracy if row.crf_pixel_accuracy is None else row.crf_pixel_accuracy


@dataclass(frozen=True)
class ImagePair:
    """One image in A and in B."""

    a: ImageRow
    b: ImageRow

    @property
    def change(self) -> float:
        """B's mIoU minus A's (NaN when either is NaN)."""
        return self.b.final_miou - self.a.final_miou


@dataclass(frozen=True)
class Comparison:
    """Two reports of one split, paired.

    Attributes:
        a, b: the reports.
        pairs: every image, in A's order.
        worse: the images whose mIoU fell most, the largest fall first (at most the count asked for).
        better: the images whose mIoU rose most, the largest rise first.
    """

    a: ReportData
    b: ReportData
    pairs: tuple[ImagePair, ...]
    worse: tuple[ImagePair, ...]
    better: tuple[ImagePair, ...]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.a.classes

    @property
    def iou_changes(self) -> tuple[float, ...]:
        """Per class: B's IoU minus A's."""
        return tuple(b - a for a, b in zip(self.a.scores.iou, self.b.scores.iou, strict=True))

    def counts(self) -> dict[str, int]:
        """How many images got better, worse, stayed the same (equal mIoU), or have no score."""
        changes = [pair.change for pair in self.pairs]
        return {"better": sum(c > 0 for c in changes), "worse": sum(c < 0 for c in changes),
                "same": sum(c == 0 for c in changes), "unscored": sum(math.isnan(c) for c in changes)}


def _names(classes: Sequence[str]) -> str:
    shown = ", ".join(classes[:6]) + (", ..." if len(classes) > 6 else "")
    return f"{len(classes)} classes ({shown})"


def _keys(rows: Sequence[ImageRow]) -> list[tuple[str, int]]:
    """(file name, occurrence) per row: an image's key even where a split lists a file twice."""
    seen: Counter[str] = Counter()
    keys = []
    for row in rows:
        keys.append((row.file_name, seen[row.file_name]))
        seen[row.file_name] += 1
    return keys


def check_same_split(a: ReportData, b: ReportData) -> None:
    """Refuses two reports that are not evaluations of one split.

    Raises:
        TsegError: other classes, other images (or sizes), or another truth (each class's pixel count).
    """
    if a.classes != b.classes:
        raise TsegError(f"A and B have different classes: A {a.folder} has {_names(a.classes)}, B {b.folder} has"
                        f" {_names(b.classes)}; compare two evaluations of the same split")
    keys_a, keys_b = set(_keys(a.rows)), set(_keys(b.rows))
    if keys_a != keys_b:
        only = sorted(keys_a - keys_b) or sorted(keys_b - keys_a)
        side = "A" if keys_a - keys_b else "B"
        raise TsegError(
            f"A and B cover different images: A {a.folder} has {len(a.rows)}, B {b.folder} has {len(b.rows)},"
            f" {len(keys_a & keys_b)} in common (e.g. {only[0][0]} only in {side});"
            " compare two evaluations of the same split")
    sizes_b = {key: (row.height, row.width) for key, row in zip(_keys(b.rows), b.rows, strict=True)}
    for key, row in zip(_keys(a.rows), a.rows, strict=True):
        if sizes_b[key] != (row.height, row.width):
            height, width = sizes_b[key]
            raise TsegError(f"A and B differ on image {row.file_name}: {row.width}x{row.height} in A {a.folder},"
                            f" {width}x{height} in B {b.folder}; compare two evaluations of the same split")
    for name, pixels_a, pixels_b in zip(a.classes, a.scores.truth_pixels, b.scores.truth_pixels, strict=True):
        if pixels_a != pixels_b:
            raise TsegError(
                f"A and B were scored against different annotations: class {name} has {pixels_a} truth pixels in"
                f" A {a.folder}, {pixels_b} in B {b.folder}; compare two evaluations of the same split")


def check_images_count(images: int) -> None:
    """Refuses a count of changed images to show outside 0..MAX_REPORT_IMAGES."""
    if isinstance(images, bool) or not isinstance(images, int) or not 0 <= images <= MAX_REPORT_IMAGES:
        raise TsegError(f"images must be an integer in 0..{MAX_REPORT_IMAGES}, got {images!r}", parameter="images")


def compare_reports(a: ReportData, b: ReportData, *, images: int = 6) -> Comparison:
    """Pairs two reports of one split image by image and picks the images that changed most.

    Args:
        a, b: the reports (:func:`~tseg.runtime.report.read.read_report`); B's differences are against A.
        images: how many of the images that got worse, and of those that got better, to pick.

    Raises:
        TsegError: ``images`` out of range, A and B are one folder, or not of one split (:func:`check_same_split`).
    """
    check_images_count(images)
    if same_folder(a.folder, b.folder):
        raise TsegError(f"A and B are the same report ({a.folder}): compare two different evaluations")
    check_same_split(a, b)
    by_key = dict(zip(_keys(b.rows), b.rows, strict=True))
    pairs = tuple(ImagePair(row, by_key[key]) for key, row in zip(_keys(a.rows), a.rows, strict=True))
    scored = [pair for pair in pairs if not math.isnan(pair.change)]
    worse = sorted((p for p in scored if p.change < 0), key=lambda p: (p.change, p.a.index))[:images]
    better = sorted((p for p in scored if p.change > 0), key=lambda p: (-p.change, p.a.index))[:images]
    return Comparison(a=a, b=b, pairs=pairs, worse=tuple(worse), better=tuple(better))


def same_folder(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are one folder (any spelling or link)."""
    ident = identity(a)
    return ident is not None and ident == identity(b)
