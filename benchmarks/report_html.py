"""tseg-bench --html: one self-contained page (inline CSS, SVG and script; no network).

The rows as a sortable table (each number cell carries the JSON's exact value in ``data-value``),
then charts drawn with the evaluation report's helpers (:mod:`tseg.runtime.report.svg`): p50
latency per input size for each file/precision/device (and batch), images/s against mIoU when
--coco scored the rows, and the --stages pipeline stages as stacked bars; then the other
sections' tables, the method and the machine. (Not ``html.py``: benchmarks/ scripts run with
this folder on sys.path, where that name would shadow the standard library's.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from tseg.benchmarks.machine import describe_machine
from tseg.benchmarks.report import COLUMNS, BenchReport, cells, footnotes, peaks_line
from tseg.benchmarks.rows import Row
from tseg.benchmarks.stages import STAGE_TITLE, STAGES
from tseg.runtime.report.page import document
from tseg.runtime.report.svg import stacked_bars, xy_chart

GENERATOR = "tseg-bench"
# Each table column's field in the JSON rows (None: a text cell); "size" sorts by pixels.
FIELDS = ("model", "precision", "device", "size", "batch", "status", "file_mb", "p50_ms", "p90_ms", "p99_ms",
          "images_per_s", "gflops", "gflops_per_s", "peak_fraction", "miou")
TEXT_FIELDS = {"model", "precision", "device", "status"}


def _sort_value(row: Row, name: str) -> str:
    """The ``data-value`` of a cell: the JSON's value (repr of a float, exact), "" for none."""
    if name == "size":
        return str(row.size[0] * row.size[1])
    value = getattr(row, name)
    if name == "status":
        return "ran" if value == "ran" else "failed"
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    return repr(value) if isinstance(value, float) else escape(str(value))


def rows_table(rows: Sequence[Row]) -> str:
    """The rows as a sortable table, the cells as in the terminal's, with a note per failed row."""
    kinds = ["text" if name in TEXT_FIELDS else "number" for name in FIELDS]
    head = "".join(f'<th data-type="{kind}">{escape(name)}</th>' for name, kind in zip(COLUMNS, kinds, strict=True))
    body = []
    for row in rows:
        tds = []
        for name, kind, text in zip(FIELDS, kinds, cells(row), strict=True):
            align = "" if kind == "text" else ' class="num"'
            tds.append(f'<td{align} data-field="{name}" data-value="{_sort_value(row, name)}">{escape(text)}</td>')
        body.append(f"<tr>{''.join(tds)}</tr>")
    notes = "".join(f"<li>{escape(line)}</li>" for line in footnotes(list(rows)))
    return (f'<table id="rows" class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + (f'<ul class="note">{notes}</ul>' if notes else "")
            + '<p class="note">Click a heading to sort.</p>')


def _series_name(row: Row, *, batches: bool) -> str:
    return f"{row.model} {row.precision} {row.device}" + (f" batch {row.batch}" if batches else "")


def latency_chart(rows: Sequence[Row]) -> str:
    """p50 ms against the input side (square root of H x W) per file/precision/device (and batch)."""
    ran = [row for row in rows if row.p50_ms is not None and math.isfinite(row.p50_ms)]
    if not ran:
        return '<p class="note">no row ran</p>'
    batches = len({row.batch for row in ran}) > 1
    series: dict[str, list[tuple[float, float]]] = {}
    for row in ran:
        side = math.sqrt(row.size[0] * row.size[1])
        series.setdefault(_series_name(row, batches=batches), []).append((side, row.p50_ms))
    return xy_chart(list(series.items()), x_label="input side (px)", y_label="p50 latency (ms per batch)",
                    zero=True)


def accuracy_chart(rows: Sequence[Row]) -> str:
    """images/s against mIoU: a point (its own series) per row that has both."""
    scored = [row for row in rows if row.miou is not None and row.images_per_s is not None
              and math.isfinite(row.miou) and math.isfinite(row.images_per_s)]
    if not scored:
        return '<p class="note">no mIoU: run tseg-bench with --coco SPLIT.json to score the rows</p>'
    series: dict[str, list[tuple[float, float]]] = {}
    for row in scored:
        name = f"{_series_name(row, batches=False)} {row.size[0]}x{row.size[1]} batch {row.batch}"
        series.setdefault(name, []).append((row.miou, row.images_per_s))
    return xy_chart(list(series.items()), x_label="mIoU", y_label="images/s", lines=False)


def _float(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        return math.nan


def stages_chart(report: BenchReport) -> str:
    """The --stages rows that ran as stacked bars of their stages' p50 ms ("" without --stages)."""
    if STAGE_TITLE not in report.sections:
        return ""
    header, table, _ = report.sections[STAGE_TITLE]
    ran = [dict(zip(header, row, strict=True)) for row in table if row[-1] == "ran"]
    if not ran:
        return '<p class="note">no --stages row ran</p>'
    names = [f"{row['model']} {row['device']} {row['photo size']}" for row in ran]
    parts = [(stage, [_float(row[f"{stage} ms"]) for row in ran]) for stage in STAGES]
    return stacked_bars(names, parts, unit="ms")


def _section_table(title: str, header: Sequence[str], table: list[list[str]], method: str) -> str:
    head = "".join(f"<th>{escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in table)
    return (f'<table data-section="{escape(title)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            f'<p class="note">{escape(method)}</p>')


def format_html(report: BenchReport) -> str:
    """The whole page as HTML text."""
    machine = describe_machine(report.machine)
    sections = [("Rows", rows_table(report.rows)),
                ("Latency (p50) per input size", latency_chart(report.rows)),
                ("Images/s against mIoU", accuracy_chart(report.rows))]
    for title, section in report.sections.items():
        chart = stages_chart(report) if title == STAGE_TITLE else ""
        sections.append((title, chart + _section_table(title, *section)))
    sections.append(("Method", f"<p>{escape(report.method())}</p><p>{escape(peaks_line(report))}</p>"))
    intro = f'<p id="machine"><b>Machine:</b> {escape(machine)}</p>'
    return document(title="tseg-bench", generator=GENERATOR, sections=sections, intro=intro)
