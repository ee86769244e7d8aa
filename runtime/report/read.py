"""Reading back a report folder that ``tseg-infer --eval --report`` wrote (what tseg-report compares).

Every file is opened as an input (a regular file, read with a bound), and everything read is
checked, so a folder that is not such a report, or one damaged since, is one line naming
what is wrong. Reports written before report.json recorded the classes' colours and the
split's location stay readable: the colours are then tseg's default palette and pictures
cannot be drawn for images the report did not picture.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import open_input, read_input
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.runtime.palette import distinct_palette
from tseg.runtime.paths import describe
from tseg.runtime.report.collect import CSV_COLUMNS, PER_IMAGE_FILE, ImageRow
from tseg.runtime.report.page import COMPARE_GENERATOR
from tseg.runtime.report.write import INDEX_FILE, PICTURES, REPORT_FILE, is_report

# report.json: two (C, C) confusion matrices of pixel counts (C <= MAX_CLASSES: about 3 MB indented) and the settings.
MAX_REPORT_JSON_BYTES = 8 << 20
MAX_CSV_LINE = 1 << 16  # characters in one line of per_image.csv: a file name and eight numbers


@dataclass(frozen=True)
class RunScores:
    """A run's scores of the labels it wrote (after the CRF where one ran).

    Attributes:
        miou, pixel_accuracy: over the split.
        iou: C per-class IoUs (NaN: the class is in neither truth nor prediction).
        truth_pixels: C pixel counts of each class in the truth (the confusion matrix's row sums).
    """

    miou: float
    pixel_accuracy: float
    iou: tuple[float, ...]
    truth_pixels: tuple[int, ...]


@dataclass(frozen=True)
class ReportData:
    """One report folder, read and checked.

    Attributes:
        folder: the report folder.
        title: its page's heading.
        settings: (name, value) pairs of the run (model, precision, device, CRF, TTA, ...).
        classes: C class names; palette: (r, g, b) per class.
        default_palette: the report predates colours in report.json (``palette`` is tseg's default).
        crf: the run refined with the CRF (``scores`` and the rows' final scores are after it).
        scores: the scores of the labels written.
        rows: every image's row, in input order (``rows[i].index == i``).
        pictures: image index -> its picture in the report (worst-N.jpg, best-N.jpg).
        split: where the split was ({"json": ..., "root": ...}), or None for an older report.
    """

    folder: Path
    title: str
    settings: tuple[tuple[str, str], ...]
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    default_palette: bool
    crf: bool
    scores: RunScores
    rows: tuple[ImageRow, ...]
    pictures: Mapping[int, Path]
    split: Mapping[str, str] | None


def _bad(what: str, folder: Path, detail: str) -> TsegError:
    """"``what`` FOLDER: detail" ("``what`` FOLDER is ..." for a detail starting with "is")."""
    separator = " " if detail.startswith("is ") else ": "
    return TsegError(f"{what} {folder}{separator}{detail}", parameter=what if what.isidentifier() else None)


def check_report_input(folder: Path, *, what: str) -> None:
    """Refuses a path that is not a report folder written by tseg-infer --report.

    Raises:
        TsegError: missing, not a folder, or without tseg's report page (parameter ``what``).
    """
    folder = Path(folder)
    kind = describe(folder)
    if kind is None:
        raise _bad(what, folder, "no such folder (need a report folder written by tseg-infer --eval --report)")
    if not folder.is_dir():
        raise _bad(what, folder, f"is {kind}: need a report folder written by tseg-infer --eval --report")
    if is_report(folder, generator=COMPARE_GENERATOR):
        raise _bad(what, folder, "is a comparison written by tseg-report: need an evaluation report written by"
                   " tseg-infer --eval --report")
    if not is_report(folder):
        raise _bad(what, folder, f"not a tseg evaluation report (no {INDEX_FILE} written by tseg-infer --report)")


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} is {type(value).__name__}, need a number")
    return float(value)


def _scores(numbers: Mapping, key: str, classes: Sequence[str] | None) -> RunScores:
    """The scores of one section of report.json ("model_alone" or "after_crf")."""
    section = numbers.get(key)
    if not isinstance(section, Mapping):
        raise ValueError(f"no {key!r} scores")
    iou = section.get("iou")
    if not isinstance(iou, Mapping) or not 1 <= len(iou) <= MAX_CLASSES:
        raise ValueError(f"{key}.iou is not a table of classes")
    if classes is not None and list(iou) != list(classes):
        raise ValueError(f"{key}.iou's classes are not the report's classes")
    confusion = section.get("confusion")
    if (not isinstance(confusion, list) or len(confusion) != len(iou)
            or any(not isinstance(row, list) or len(row) != len(iou) for row in confusion)):
        raise ValueError(f"{key}.confusion is not a {len(iou)}x{len(iou)} matrix")
    truth = []
    for row in confusion:
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in row):
            raise ValueError(f"{key}.confusion holds something other than pixel counts")
        truth.append(sum(row))
    values = tuple(math.nan if v is None else _number(v, f"{key}.iou[{name!r}]") for name, v in iou.items())
    return RunScores(_number(section.get("miou"), f"{key}.miou"),
                     _number(section.get("pixel_accuracy"), f"{key}.pixel_accuracy"), values, tuple(truth))


def _palette(numbers: Mapping, count: int) -> tuple[tuple[tuple[int, int, int], ...], bool]:
    palette = numbers.get("palette")
    if palette is None:
        return distinct_palette(count), True
    if (not isinstance(palette, list) or len(palette) != count
            or any(not isinstance(c, list) or len(c) != 3 or any(type(v) is not int or not 0 <= v <= 255 for v in c)
                   for c in palette)):
        raise ValueError(f"palette is not {count} (r, g, b) colours")
    return tuple(tuple(colour) for colour in palette), False


def _indexes(numbers: Mapping, key: str, count: int) -> list[int]:
    value = numbers.get(key, [])
    if not isinstance(value, list) or any(type(i) is not int or not 0 <= i < count for i in value):
        raise ValueError(f"{key} is not a list of image indexes")
    return value


def _split(numbers: Mapping) -> Mapping[str, str] | None:
    split = numbers.get("split")
    if split is None:
        return None
    if not isinstance(split, Mapping) or not all(isinstance(split.get(k), str) for k in ("json", "root")):
        raise ValueError("split is not {json, root}")
    return {"json": split["json"], "root": split["root"]}


def _lines(text: io.TextIOBase) -> Iterator[str]:
    """The lines of ``text``, each read with a bound (a file of one endless line is refused, not read whole)."""
    while line := text.readline(MAX_CSV_LINE + 1):
        if len(line) > MAX_CSV_LINE:
            raise ValueError(f"a line is longer than {MAX_CSV_LINE} characters")
        yield line


def _read_rows(folder: Path, *, what: str, count: int) -> tuple[ImageRow, ...]:
    """per_image.csv's rows, checked: its columns, ``count`` rows (no more is read), indexes in order."""
    rows = []
    if describe(folder / PER_IMAGE_FILE) is None:
        raise _bad(what, folder, f"has no {PER_IMAGE_FILE} (written by tseg-infer --report beside {INDEX_FILE})")
    with open_input(folder / PER_IMAGE_FILE, what=what) as handle:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        try:
            reader = csv.DictReader(_lines(text))
            if tuple(reader.fieldnames or ()) != CSV_COLUMNS:
                raise ValueError(f"its columns are not {', '.join(CSV_COLUMNS)}")
            for cells in reader:
                if len(rows) == count:
                    raise ValueError(f"it has more rows than the {count} images of report.json")
                row = ImageRow.from_cells(cells)
                if row.index != len(rows):
                    raise ValueError(f"line {reader.line_num}: image index {row.index}, need {len(rows)}")
                rows.append(row)
        except (ValueError, KeyError, TypeError, csv.Error, UnicodeDecodeError) as err:
            raise _bad(what, folder, f"{PER_IMAGE_FILE} is not a tseg report's: {err}") from None
    if len(rows) != count:
        raise _bad(what, folder, f"{PER_IMAGE_FILE} has {len(rows)} image row(s), report.json says {count}")
    return tuple(rows)


def read_report(folder: Path, *, what: str) -> ReportData:
    """Reads and checks a report folder written by tseg-infer --eval --report.

    Args:
        folder: the report folder.
        what: how the caller names it in errors (a parameter's name: "a", "b").

    Raises:
        TsegError: not such a report, or report.json / per_image.csv missing or not tseg's.
    """
    folder = Path(folder)
    check_report_input(folder, what=what)
    if describe(folder / REPORT_FILE) is None:
        raise _bad(what, folder, f"has no {REPORT_FILE} (written by tseg-infer --report beside {INDEX_FILE})")
    data = read_input(folder / REPORT_FILE, what=what, limit=MAX_REPORT_JSON_BYTES)
    try:
        numbers = json.loads(data)
        if not isinstance(numbers, dict):
            raise ValueError("not a JSON object")
        count = numbers.get("images")
        if type(count) is not int or count < 0:
            raise ValueError("images is not a count")
        classes = numbers.get("classes")
        if classes is not None and (not isinstance(classes, list) or not all(isinstance(c, str) for c in classes)):
            raise ValueError("classes is not a list of names")
        plain = _scores(numbers, "model_alone", classes)
        crf = numbers.get("after_crf") is not None
        scores = _scores(numbers, "after_crf", classes) if crf else plain
        classes = tuple(classes) if classes is not None else tuple(numbers["model_alone"]["iou"])
        palette, default = _palette(numbers, len(classes))
        settings = numbers.get("settings", {})
        if not isinstance(settings, Mapping) or not all(isinstance(v, str) for v in settings.values()):
            raise ValueError("settings is not a table of text")
        pictures = {i: folder / PICTURES / f"{kind}-{i}.jpg" for kind in ("best", "worst")
                    for i in _indexes(numbers, kind, count)}
        title, split = str(numbers.get("title", folder.name)), _split(numbers)
    except (ValueError, UnicodeDecodeError) as err:  # json.JSONDecodeError is a ValueError
        raise _bad(what, folder, f"{REPORT_FILE} is not a tseg report's: {err}") from None
    rows = _read_rows(folder, what=what, count=count)
    return ReportData(folder=folder, title=title, settings=tuple(settings.items()), classes=classes, palette=palette,
                      default_palette=default, crf=crf, scores=scores, rows=rows, pictures=pictures, split=split)
