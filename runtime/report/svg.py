"""The report's charts as inline SVG: drawn by the browser, no plotting library, text stays text."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")  # bars of each series, in order
FONT = "font-family:sans-serif;font-size:13px"


def _hex(rgb: Sequence[int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(int(v) for v in rgb))


def number(value: float | None, digits: int = 4) -> str:
    """A score as the page shows it: ``digits`` decimals, an en dash for none (NaN or None)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    return f"{value:.{digits}f}"


def bar_chart(names: Sequence[str], series: Sequence[tuple[str, Sequence[float]]], *,
              palette: Sequence[Sequence[int]], width: int = 760) -> str:
    """Horizontal bars of per-class values in 0..1, one group per class, one bar per series.

    Args:
        names: C class names (each shown with its palette swatch).
        series: (label, C values) per series; NaN values draw no bar and show an en dash.
        palette: (r, g, b) per class.
        width: the SVG's width in px.

    Returns:
        An ``<svg>`` element.
    """
    bar, gap, label_width, value_width = 14, 10, 170, 60
    group = bar * len(series) + gap
    legend = 26
    height = legend + group * len(names) + 20
    span = width - label_width - value_width
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
             f' xmlns="http://www.w3.org/2000/svg" style="{FONT}">']
    x = label_width
    for number_, (label, _) in enumerate(series):
        colour = SERIES_COLOURS[number_ % len(SERIES_COLOURS)]
        parts.append(f'<rect x="{x}" y="4" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="14">{escape(label)}</text>')
        x += 30 + 8 * len(label)
    for tick in (0, 0.25, 0.5, 0.75, 1.0):
        tx = label_width + tick * span
        parts.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{legend}" y2="{height - 16}" stroke="#ddd"/>'
                     f'<text x="{tx:.1f}" y="{height - 3}" text-anchor="middle" fill="#555">{tick:g}</text>')
    for row, name in enumerate(names):
        top = legend + row * group
        parts.append(f'<rect x="4" y="{top + 2}" width="12" height="12" fill="{_hex(palette[row])}"'
                     f' stroke="#333"/><text x="22" y="{top + 13}">{escape(str(name))}</text>')
        for number_, (label, values) in enumerate(series):
            value = float(values[row])
            y = top + number_ * bar
            colour = SERIES_COLOURS[number_ % len(SERIES_COLOURS)]
            if not math.isnan(value):
                parts.append(f'<rect x="{label_width}" y="{y}" width="{max(0.0, value) * span:.1f}"'
                             f' height="{bar - 2}" fill="{colour}"><title>{escape(str(name))}, {escape(label)}:'
                             f' {number(value)}</title></rect>')
            parts.append(f'<text x="{width - value_width + 6}" y="{y + bar - 3}" font-size="11">'
                         f'{number(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _cell_colour(share: float) -> tuple[str, str]:
    """(fill, text colour) of a heat-map cell holding ``share`` (0..1) of its row."""
    level = 1.0 - 0.85 * min(max(share, 0.0), 1.0) ** 0.5  # sqrt: small confusions still show
    fill = _hex((round(255 * level), round(255 * (0.3 + 0.7 * level)), 255))
    return fill, ("#fff" if level < 0.55 else "#111")


def heat_map(matrix: np.ndarray, names: Sequence[str], *, cell: int = 40) -> str:
    """The row-normalised confusion matrix: rows are the truth, columns the prediction.

    Args:
        matrix: (C, C) pixel counts, rows truth, columns prediction.
        names: C class names.
        cell: a cell's side in px (shares are written in cells of 30 px and more).

    Returns:
        An ``<svg>`` element; each cell's tooltip gives its share and pixel count.
    """
    counts = np.asarray(matrix, dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(totals > 0, counts / np.maximum(totals, 1), np.nan)
    size = len(names)
    left, top = 170, 150
    width, height = left + cell * size + 10, top + cell * size + 30
    parts = [f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
             f' xmlns="http://www.w3.org/2000/svg" style="{FONT}">',
             f'<text x="{left + cell * size / 2}" y="14" text-anchor="middle">prediction</text>',
             f'<text x="14" y="{top + cell * size / 2}" text-anchor="middle"'
             f' transform="rotate(-90 14 {top + cell * size / 2})">truth</text>']
    for index, name in enumerate(names):
        cx = left + index * cell + cell / 2
        parts.append(f'<text x="{left - 6}" y="{top + index * cell + cell / 2 + 4}" text-anchor="end">'
                     f'{escape(str(name))}</text>'
                     f'<text x="{cx}" y="{top - 6}" transform="rotate(-60 {cx} {top - 6})">{escape(str(name))}</text>')
    for row in range(size):
        for column in range(size):
            share = shares[row, column]
            x, y = left + column * cell, top + row * cell
            fill, ink = ("#f4f4f4", "#999") if np.isnan(share) else _cell_colour(float(share))
            tip = f"truth {names[row]}, predicted {names[column]}: {number(float(share), 3)} ({counts[row, column]} px)"
            parts.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{fill}" stroke="#fff">'
                         f'<title>{escape(tip)}</title></rect>')
            if cell >= 30 and not np.isnan(share) and counts[row, column]:
                parts.append(f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" font-size="11"'
                             f' fill="{ink}">{share:.2f}</text>')
    parts.append("</svg>")
    return "".join(parts)
