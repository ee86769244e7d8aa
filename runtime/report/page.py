"""The report's index.html: one self-contained page (inline CSS, SVG and script; no network)."""

from __future__ import annotations

import csv
import heapq
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

from tseg.runtime.data.metrics import SegmentationScores
from tseg.runtime.report.collect import ImageRow
from tseg.runtime.report.svg import bar_chart, heat_map, number

GENERATOR = "tseg report"  # <meta name="generator">: marks a folder tseg may replace
COMPARE_GENERATOR = "tseg report comparison"  # the same for tseg-report's page (two reports side by side)
MAX_TABLE_ROWS = 2000  # the page's per-image table shows the worst this many; the CSV has them all

STYLE = """
body{font-family:sans-serif;margin:24px;color:#111;max-width:1400px}
h1{font-size:24px}h2{font-size:19px;margin-top:32px;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:14px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;background:#f1f1f1;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:14px;margin-bottom:4px}.note{color:#555;font-size:13px}
.swatch{display:inline-block;width:12px;height:12px;border:1px solid #333;margin-right:4px;vertical-align:-1px}
td.up{color:#17702d}td.down{color:#b3261e}tr.differs>*{background:#fff3c4}
.pair img{display:block;margin:0 0 4px}.run{margin:8px 0 2px;font-size:13px;color:#333}
.beside{display:flex;flex-wrap:wrap;gap:8px 32px;align-items:flex-start}
"""

SORT_SCRIPT = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  var headers = table.querySelectorAll('th');
  headers.forEach(function (th, column) {
    th.addEventListener('click', function () {
      var up = th.getAttribute('aria-sort') !== 'ascending';
      headers.forEach(function (other) { other.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', up ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      var numeric = th.dataset.type === 'number';
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.value, y = b.cells[column].dataset.value;
        var order = numeric ? (parseFloat(x) || -1) - (parseFloat(y) || -1) : x.localeCompare(y);
        return up ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class PageContent:
    """What the page shows.

    Attributes:
        title: the page's heading (the split's name).
        facts: (name, value) pairs: model, precision, device, input size, CRF, TTA, version, command.
        classes: C class names; palette: (r, g, b) per class.
        scores / crf_scores: the split's scores without and (None: no CRF ran) with the CRF.
        matrix / crf_matrix: (C, C) pixel counts, rows truth, columns prediction.
        worst / best: (row, picture path relative to the page) of the chosen images.
        rows_csv: the per-image CSV (read again, streaming, to fill the table).
        total_rows: how many rows it holds.
    """

    title: str
    facts: Sequence[tuple[str, str]]
    classes: Sequence[str]
    palette: Sequence[Sequence[int]]
    scores: SegmentationScores
    crf_scores: SegmentationScores | None
    matrix: object
    crf_matrix: object | None
    worst: Sequence[tuple[ImageRow, str]]
    best: Sequence[tuple[ImageRow, str]]
    rows_csv: Path
    total_rows: int


def _rows(content: PageContent) -> Iterator[ImageRow]:
    with open(content.rows_csv, newline="", encoding="utf-8") as handle:
        for cells in csv.DictReader(handle):
            yield ImageRow.from_cells(cells)


def _facts(content: PageContent) -> str:
    rows = "".join(f"<tr><th>{escape(k)}</th><td><code>{escape(v)}</code></td></tr>" for k, v in content.facts)
    return f'<table id="settings">{rows}</table>'


def _scores(content: PageContent) -> str:
    crf = content.crf_scores
    head = "<tr><th></th><th>model alone</th>" + ("<th>after the CRF</th><th>change</th>" if crf else "") + "</tr>"
    body = ""
    for label, key in (("mIoU", "miou"), ("pixel accuracy", "pixel_accuracy")):
        plain = getattr(content.scores, key)
        cells = f'<td class="num" data-score="{key}">{number(plain)}</td>'
        if crf is not None:
            after = getattr(crf, key)
            cells += (f'<td class="num" data-score="crf_{key}">{number(after)}</td>'
                      f'<td class="num">{after - plain:+.4f}</td>')
        body += f"<tr><th>{label}</th>{cells}</tr>"
    return f'<table id="scores">{head}{body}</table>'


def _per_class(content: PageContent) -> str:
    series = [("model alone", content.scores.iou)]
    if content.crf_scores is not None:
        series.append(("after the CRF", content.crf_scores.iou))
    chart = bar_chart(content.classes, series, palette=content.palette)
    head = "<tr><th>class</th>" + "".join(f"<th>{escape(label)}</th>" for label, _ in series) + "</tr>"
    body = ""
    for index, name in enumerate(content.classes):
        colour = "rgb({},{},{})".format(*content.palette[index])
        cells = "".join(f'<td class="num" data-iou="{"crf_" if n else ""}{escape(name)}">{number(values[index])}</td>'
                        for n, (_, values) in enumerate(series))
        body += f'<tr><td><span class="swatch" style="background:{colour}"></span>{escape(name)}</td>{cells}</tr>'
    return f'{chart}<details><summary>the numbers</summary><table id="iou">{head}{body}</table></details>'


def _confusion(content: PageContent) -> str:
    parts = ["<h3>model alone</h3>", heat_map(content.matrix, content.classes)]
    if content.crf_matrix is not None:
        parts += ["<h3>after the CRF</h3>", heat_map(content.crf_matrix, content.classes)]
    return "".join(parts)


def _image_scores(row: ImageRow) -> str:
    text = f"mIoU {number(row.miou)}, pixel accuracy {number(row.pixel_accuracy)}"
    if row.crf_miou is not None:
        text += f"; after the CRF: mIoU {number(row.crf_miou)}, pixel accuracy {number(row.crf_pixel_accuracy)}"
    return text


def _figures(chosen: Sequence[tuple[ImageRow, str]], kind: str) -> str:
    if not chosen:
        return '<p class="note">none (no image scored, or --report-images 0)</p>'
    return "".join(
        f'<figure id="{kind}-{row.index}"><figcaption><b>{escape(row.file_name)}</b> ({row.width}x{row.height}):'
        f' {_image_scores(row)}</figcaption><img src="{escape(picture)}" alt="{escape(row.file_name)}:'
        f' photo, truth, prediction{", after the CRF" if row.crf_miou is not None else ""}"></figure>'
        for row, picture in chosen
    )


def _table(content: PageContent) -> str:
    anchors = {row.index: f"#worst-{row.index}" for row, _ in content.worst}
    anchors.update({row.index: f"#best-{row.index}" for row, _ in content.best if row.index not in anchors})
    crf = content.crf_scores is not None
    rows = _rows(content)
    if content.total_rows > MAX_TABLE_ROWS:
        rows = iter(heapq.nsmallest(MAX_TABLE_ROWS, rows, key=lambda r: (r.final_miou, r.index)))
    columns = [("#", "number"), ("image", "text"), ("size", "number"), ("mIoU", "number"),
               ("pixel accuracy", "number")]
    if crf:
        columns += [("mIoU after the CRF", "number"), ("pixel accuracy after the CRF", "number")]
    columns.append(("links", "text"))
    head = "".join(f'<th data-type="{kind}">{escape(name)}</th>' for name, kind in columns)
    body = []
    for row in rows:
        values = [row.miou, row.pixel_accuracy] + ([row.crf_miou, row.crf_pixel_accuracy] if crf else [])
        cells = [f'<td class="num" data-value="{row.index}">{row.index}</td>',
                 f'<td data-value="{escape(row.file_name)}">{escape(row.file_name)}</td>',
                 f'<td class="num" data-value="{row.width * row.height}">{row.width}x{row.height}</td>']
        cells += [f'<td class="num" data-value="{v!r}">{number(v)}</td>' for v in values]
        links = f'<a href="{escape(row.label_png)}">labels</a>'
        if row.index in anchors:
            links += f' <a href="{anchors[row.index]}">pictures</a>'
        cells.append(f'<td data-value="{1 if row.index in anchors else 0}">{links}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = (f'<p class="note">{content.total_rows} images; the table shows the {MAX_TABLE_ROWS} worst.'
            if content.total_rows > MAX_TABLE_ROWS else f'<p class="note">{content.total_rows} images.')
    note += ' Click a heading to sort. Every row: <a href="per_image.csv">per_image.csv</a>.</p>'
    rows_html = "".join(body)
    return f'{note}<table id="images" class="sortable"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'


def render(content: PageContent) -> str:
    """The whole page as HTML text."""
    sections = [
        ("Settings", _facts(content)),
        ("Scores", _scores(content)),
        ("IoU per class", _per_class(content)),
        ("Confusion matrix (each row: where the truth's pixels went, as shares)", _confusion(content)),
        ("The worst images", _figures(content.worst, "worst")),
        ("The best images", _figures(content.best, "best")),
        ("Every image", _table(content)),
    ]
    return document(title=content.title, generator=GENERATOR, sections=sections)


def document(*, title: str, generator: str, sections: Sequence[tuple[str, str]], intro: str = "") -> str:
    """A whole self-contained page: the shared style, a heading, ``intro`` (HTML), each (heading, HTML)
    section, and the script that sorts every ``table.sortable`` by a click on a heading."""
    body = "".join(f"<h2>{escape(name)}</h2>{html}" for name, html in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{generator}">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
            f"<h1>{escape(title)}</h1>{intro}{body}<script>{SORT_SCRIPT}</script></body></html>\n")
