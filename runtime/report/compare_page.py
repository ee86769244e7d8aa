"""tseg-report's index.html: two reports side by side on one self-contained page (the shell of page.py)."""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

from tseg.runtime.report.compare import Comparison, ImagePair, final_accuracy
from tseg.runtime.report.compare_pictures import Picture
from tseg.runtime.report.page import COMPARE_GENERATOR, MAX_TABLE_ROWS, document
from tseg.runtime.report.read import ReportData
from tseg.runtime.report.svg import bar_chart, number

SIDES = (("a", "A"), ("b", "B"))


@dataclass(frozen=True)
class ComparePage:
    """What the page shows.

    Attributes:
        comparison: the two reports, paired.
        reports: "a"/"b" -> each report's index.html as a link from the page.
        label_pngs: "a"/"b" -> per image index, its label PNG as a link from the page.
        pictures: image index -> (A's picture, B's picture) of each changed image shown.
        table_csv: the page's per-image CSV (every image), as a link.
    """

    comparison: Comparison
    reports: Mapping[str, str]
    label_pngs: Mapping[str, Sequence[str]]
    pictures: Mapping[int, tuple[Picture, Picture]]
    table_csv: str


def change_cell(value: float, **data: str) -> str:
    """A table cell holding a difference: signed, green when up, red when down, en dash when none."""
    attrs = "".join(f' data-{key}="{escape(text)}"' for key, text in data.items())
    if math.isnan(value):
        return f'<td class="num" data-value="nan"{attrs}>{number(value)}</td>'
    kind = " up" if value > 0 else " down" if value < 0 else ""
    return f'<td class="num{kind}" data-value="{value!r}"{attrs}>{value:+.4f}</td>'


def _runs(run: ReportData) -> str:
    return "the labels after the CRF" if run.crf else "the labels of the model alone (no CRF)"


def _intro(content: ComparePage) -> str:
    comparison = content.comparison
    items = "".join(
        f'<li><b>{label}</b>: <a href="{escape(content.reports[side])}">{escape(str(run.folder))}</a>'
        f" ({escape(run.title)})</li>"
        for (side, label), run in zip(SIDES, (comparison.a, comparison.b), strict=True))
    return (f"<ul id=\"runs\">{items}</ul><p class=\"note\">Every score is that of the labels each run wrote"
            f" (after the CRF where it ran) on the same {len(comparison.pairs)} images; every change is B minus A.</p>")


def _settings(comparison: Comparison) -> str:
    a, b = dict(comparison.a.settings), dict(comparison.b.settings)
    names = list(a) + [name for name in b if name not in a]
    rows = [("scores of", _runs(comparison.a), _runs(comparison.b))]
    rows += [(name, a.get(name, "\u2013"), b.get(name, "\u2013")) for name in names]
    body = "".join(
        f'<tr{" class=differs" if va != vb else ""}><th>{escape(name)}</th><td><code>{escape(va)}</code></td>'
        f"<td><code>{escape(vb)}</code></td></tr>" for name, va, vb in rows)
    return (f'<table id="settings"><tr><th>setting</th><th>A</th><th>B</th></tr>{body}</table>'
            '<p class="note">Highlighted: the settings that differ.</p>')


def _scores(comparison: Comparison) -> str:
    body = ""
    for label, key in (("mIoU", "miou"), ("pixel accuracy", "pixel_accuracy")):
        a, b = getattr(comparison.a.scores, key), getattr(comparison.b.scores, key)
        change = change_cell(b - a, score=f"change_{key}")
        body += (f'<tr><th>{label}</th><td class="num" data-score="a_{key}">{number(a)}</td>'
                 f'<td class="num" data-score="b_{key}">{number(b)}</td>{change}</tr>')
    return f'<table id="scores"><tr><th></th><th>A</th><th>B</th><th>change</th></tr>{body}</table>'


def _per_class(comparison: Comparison) -> str:
    a, b = comparison.a.scores.iou, comparison.b.scores.iou
    chart = bar_chart(comparison.classes, [("A", a), ("B", b)], palette=comparison.a.palette)
    body = ""
    for index, name in enumerate(comparison.classes):
        colour = "rgb({},{},{})".format(*comparison.a.palette[index])
        body += (f'<tr><td><span class="swatch" style="background:{colour}"></span>{escape(name)}</td>'
                 f'<td class="num" data-iou="a" data-class="{escape(name)}">{number(a[index])}</td>'
                 f'<td class="num" data-iou="b" data-class="{escape(name)}">{number(b[index])}</td>'
                 f"{change_cell(comparison.iou_changes[index], iou='change', **{'class': name})}</tr>")
    note = ""
    if comparison.a.default_palette:
        note = ('<p class="note">Colours: tseg\'s default palette (report A predates the colours in'
                " report.json).</p>")
    table = f'<table id="iou"><tr><th>class</th><th>A</th><th>B</th><th>change</th></tr>{body}</table>'
    return f'<div class="beside">{chart}{table}</div>{note}'


def _figure(pair: ImagePair, pictures: tuple[Picture, Picture]) -> str:
    row = pair.a
    widest = max(picture.width for picture in pictures) or 1
    parts = []
    for (side, label), picture in zip(SIDES, pictures, strict=True):
        if picture.src is None:
            parts.append(f'<p class="run">{label}: {escape(picture.how)}</p>')
            continue
        share = 100 * picture.width / widest  # one scale for both: their tiles line up
        parts.append(f'<p class="run">{label}: {escape(picture.how)}</p><a href="{escape(picture.src)}">'
                     f'<img src="{escape(picture.src)}" style="width:{share:.2f}%" data-side="{side}"'
                     f' alt="{escape(row.file_name)} in {label}"></a>')
    caption = (f"<b>{escape(row.file_name)}</b> ({row.width}x{row.height}): mIoU {number(pair.a.final_miou)} in A,"
               f" {number(pair.b.final_miou)} in B ({pair.change:+.4f})")
    return (f'<figure id="image-{row.index}"><figcaption>{caption}</figcaption>'
            f'<div class="pair" style="max-width:{widest}px">{"".join(parts)}</div></figure>')


def _figures(content: ComparePage, pairs: Sequence[ImagePair], kind: str) -> str:
    if not pairs:
        return f'<p class="note">none (no image got {kind}, or --images 0)</p>'
    return "".join(_figure(pair, content.pictures[pair.a.index]) for pair in pairs)


def _counts(comparison: Comparison) -> str:
    counts = comparison.counts()
    text = (f"Of {len(comparison.pairs)} images, {counts['better']} got better in B, {counts['worse']} worse and"
            f" {counts['same']} kept their mIoU")
    text += f" ({counts['unscored']} have no score)." if counts["unscored"] else "."
    return f'<p id="counts">{text}</p>'


def _score_cell(value: float) -> str:
    return f'<td class="num" data-value="{value!r}">{number(value)}</td>'


def _table(content: ComparePage) -> str:
    pairs = content.comparison.pairs
    total = len(pairs)
    if total > MAX_TABLE_ROWS:
        pairs = heapq.nsmallest(MAX_TABLE_ROWS, pairs, key=lambda p: (-abs(p.change), p.a.index))
    columns = [("#", "number"), ("image", "text"), ("size", "number"), ("mIoU in A", "number"),
               ("mIoU in B", "number"), ("change", "number"), ("pixel accuracy in A", "number"),
               ("pixel accuracy in B", "number"), ("links", "text")]
    head = "".join(f'<th data-type="{kind}">{escape(name)}</th>' for name, kind in columns)
    body = []
    for pair in pairs:
        row, shown = pair.a, pair.a.index in content.pictures
        cells = [f'<td class="num" data-value="{row.index}">{row.index}</td>',
                 f'<td data-value="{escape(row.file_name)}">{escape(row.file_name)}</td>',
                 f'<td class="num" data-value="{row.width * row.height}">{row.width}x{row.height}</td>']
        cells += [_score_cell(v) for v in (pair.a.final_miou, pair.b.final_miou)]
        cells.append(change_cell(pair.change))
        cells += [_score_cell(v) for v in (final_accuracy(pair.a), final_accuracy(pair.b))]
        links = " ".join(f'<a href="{escape(content.label_pngs[side][row.index])}">labels {label}</a>'
                         for side, label in SIDES)
        if shown:
            links += f' <a href="#image-{row.index}">pictures</a>'
        cells.append(f'<td data-value="{int(shown)}">{links}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    note = (f"{total} images; the table shows the {MAX_TABLE_ROWS} that changed most." if total > MAX_TABLE_ROWS
            else f"{total} images.")
    note += f' Click a heading to sort. Every row: <a href="{escape(content.table_csv)}">per_image.csv</a>.'
    return (f'<p class="note">{note}</p><table id="images" class="sortable"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def render_comparison(content: ComparePage) -> str:
    """The whole page as HTML text."""
    comparison = content.comparison
    sections = [
        ("Settings", _settings(comparison)),
        ("Scores", _scores(comparison)),
        ("IoU per class", _per_class(comparison)),
        ("Images", _counts(comparison)),
        ("The images that got worse in B (largest fall first)", _figures(content, comparison.worse, "worse")),
        ("The images that got better in B (largest rise first)", _figures(content, comparison.better, "better")),
        ("Every image", _table(content)),
    ]
    title = f"tseg comparison: A {comparison.a.folder.name} against B {comparison.b.folder.name}"
    return document(title=title, generator=COMPARE_GENERATOR, sections=sections, intro=_intro(content))
