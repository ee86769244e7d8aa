"""tseg-report's folder: both reports read and checked before any work, then the pictures, the numbers and the page.

Layout of ``OUT``::

    index.html        the page (written last: a folder with it is a complete comparison)
    comparison.json   the numbers the page shows: each run's settings and scores, the differences
    per_image.csv     every image's mIoU and pixel accuracy in A and in B, and the change
    pictures/         a-N.jpg, b-N.jpg: image N as A and as B saw it (the images that changed most)
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.files import RUNS_DIR, atomic_write_bytes, create_run_dir
from tseg.runtime.paths import Input, Output, check_outputs
from tseg.runtime.report.compare import Comparison, compare_reports, final_accuracy
from tseg.runtime.report.compare_page import ComparePage, render_comparison
from tseg.runtime.report.compare_pictures import SIDES, PictureMaker, label_png_path
from tseg.runtime.report.page import COMPARE_GENERATOR
from tseg.runtime.report.read import ReportData, check_report_input, read_report
from tseg.runtime.report.write import INDEX_FILE, PER_IMAGE_FILE, check_report_folder, clear_pictures, link_from

COMPARISON_FILE = "comparison.json"
COMPARE_DIR = "compare"  # runs/compare/A-vs-B: the default output folder
CSV_COLUMNS = ("index", "file_name", "height", "width", "a_miou", "b_miou", "change", "a_pixel_accuracy",
               "b_pixel_accuracy")


@dataclass(frozen=True)
class CompareSettings:
    """What tseg-report is asked to do.

    Attributes:
        a, b: the two report folders (written by tseg-infer --eval --report); changes are B minus A.
        out: the comparison's folder (new, empty, or an earlier comparison, which is replaced);
            None: a new folder runs/compare/A-vs-B (A-vs-B-2, ... if taken).
        images: how many of the images that got worse, and of those that got better, are pictured.
    """

    a: Path
    b: Path
    out: Path | None = None
    images: int = 6


def _name(folder: Path) -> str:
    return Path(os.path.abspath(folder)).name or "report"


def check_output(out: Path, *, a: ReportData, b: ReportData, new: bool = False) -> None:
    """Refuses, before any work, an output folder that is an input or lies in one (A, B, the split's data
    folder), or holds anything but an earlier comparison.

    Args:
        out: the folder.
        a, b: the reports.
        new: ``out`` is the parent of a new folder to be made (only its place is checked).

    Raises:
        TsegError: naming ``out``.
    """
    inputs = [Input("a", a.folder, folder=True), Input("b", b.folder, folder=True)]
    inputs += [Input("the split's data folder", Path(run.split["root"]), folder=True) for run in (a, b) if run.split]
    check_outputs([Output("out", Path(out), folder=True)], inputs)
    if not new:
        check_report_folder(Path(out), parameter="out", generator=COMPARE_GENERATOR, what="tseg comparison")


def _run_json(run: ReportData) -> dict:
    return {"folder": str(run.folder), "title": run.title, "settings": dict(run.settings),
            "scores": "after_crf" if run.crf else "model_alone", "miou": run.scores.miou,
            "pixel_accuracy": run.scores.pixel_accuracy, "iou": dict(zip(run.classes, run.scores.iou, strict=True))}


def comparison_json(comparison: Comparison) -> dict:
    """The numbers of a comparison, as comparison.json holds them (changes: B minus A)."""
    a, b = comparison.a, comparison.b
    return {
        "a": _run_json(a),
        "b": _run_json(b),
        "images": len(comparison.pairs),
        "classes": list(comparison.classes),
        "change": {"miou": b.scores.miou - a.scores.miou,
                   "pixel_accuracy": b.scores.pixel_accuracy - a.scores.pixel_accuracy,
                   "iou": dict(zip(comparison.classes, comparison.iou_changes, strict=True))},
        "counts": comparison.counts(),
        "worse": [pair.a.index for pair in comparison.worse],
        "better": [pair.a.index for pair in comparison.better],
    }


def _csv_bytes(comparison: Comparison) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(CSV_COLUMNS)
    for pair in comparison.pairs:
        row = pair.a
        writer.writerow([row.index, row.file_name, row.height, row.width, repr(pair.a.final_miou),
                         repr(pair.b.final_miou), repr(pair.change), repr(final_accuracy(pair.a)),
                         repr(final_accuracy(pair.b))])
    return text.getvalue().encode()


def write_comparison(comparison: Comparison, *, out: Path) -> Path:
    """Writes the comparison's folder (checked already: :func:`check_output`); returns its page."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    clear_pictures(out, prefixes=tuple(f"{side}-" for side in SIDES))
    maker = PictureMaker(out=out, classes=comparison.classes, palette=comparison.a.palette)
    runs = dict(zip(SIDES, (comparison.a, comparison.b), strict=True))
    pictures = {}
    for pair in (*comparison.worse, *comparison.better):
        pictures[pair.a.index] = (maker.picture(comparison.a, "a", pair.a), maker.picture(comparison.b, "b", pair.b))
    atomic_write_bytes(out / COMPARISON_FILE, json.dumps(comparison_json(comparison), indent=2).encode())
    atomic_write_bytes(out / PER_IMAGE_FILE, _csv_bytes(comparison))
    content = ComparePage(
        comparison=comparison,
        reports={side: link_from(out, run.folder / INDEX_FILE) for side, run in runs.items()},
        label_pngs={side: [link_from(out, label_png_path(run, row)) for row in run.rows] for side, run in runs.items()},
        pictures=pictures,
        table_csv=PER_IMAGE_FILE,
    )
    index = out / INDEX_FILE
    atomic_write_bytes(index, render_comparison(content).encode())
    return index


def compare_folders(settings: CompareSettings) -> tuple[Path, Comparison]:
    """tseg-report's work: reads and checks A and B and the output folder, then writes the comparison.

    Returns:
        (the page, the comparison).

    Raises:
        TsegError: A or B is not a report, they are not of one split, or the output folder is refused;
            all before anything is written.
    """
    check_report_input(settings.a, what="a")
    check_report_input(settings.b, what="b")
    a, b = read_report(settings.a, what="a"), read_report(settings.b, what="b")
    comparison = compare_reports(a, b, images=settings.images)
    if settings.out is not None:
        check_output(settings.out, a=a, b=b)
        return write_comparison(comparison, out=settings.out), comparison
    check_output(RUNS_DIR / COMPARE_DIR, a=a, b=b, new=True)
    out = create_run_dir(RUNS_DIR / COMPARE_DIR, f"{_name(settings.a)}-vs-{_name(settings.b)}")
    try:
        return write_comparison(comparison, out=out), comparison
    except BaseException:
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # nothing written: leave no empty folder behind
        raise


__all__ = ["COMPARISON_FILE", "CompareSettings", "check_output", "compare_folders", "comparison_json",
           "write_comparison"]
