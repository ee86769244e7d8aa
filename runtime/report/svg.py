"""The reports' charts as inline SVG: drawn by the browser, no plotting library, text stays text.

tseg-infer --report draws :func:`bar_chart` and :func:`heat_map`; tseg-bench --html draws
:func:`xy_chart` (lines or points) and :func:`stacked_bars` with them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

SERIES_COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
                  "#ccb974", "#64b5cd")  # each series' colour, in order
FONT = "font-family:sans-serif;font-size:13px"


def _svg_open(width: int, height: int) -> str:
    return (f'<svg class="chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}"'
            f' xmlns="http://www.w3.org/2000/svg" style="{FONT}">')


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
    parts = [_svg_open(width, height)]
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
    parts = [_svg_open(width, height),
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


MARKERS = ("circle", "square", "triangle", "diamond")  # a series' marker, in turn with its colour


def nice_ticks(low: float, high: float, *, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2 or 5 x 10^k apart) from at or below ``low`` to at or above ``high``."""
    if high - low <= 1e-12 * max(abs(low), abs(high), 1.0):
        pad = abs(low) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(count - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw * (1 - 1e-9))
    start = math.floor(low / step + 1e-9) * step
    steps = math.ceil((high - start) / step - 1e-9)
    return [round(start + i * step, 12) for i in range(steps + 1)]


def _marker(shape: str, x: float, y: float, colour: str, *, attrs: str = "", title: str = "") -> str:
    """A marker element centred on (x, y), with extra attributes and a tooltip."""
    inner = f"<title>{escape(title)}</title>" if title else ""
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"{attrs}>{inner}</circle>'
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"{attrs}>{inner}</rect>'
    corners = {"triangle": ((0, -5), (-5, 4), (5, 4)), "diamond": ((0, -5), (-5, 0), (0, 5), (5, 0))}[shape]
    points = " ".join(f"{x + dx:.1f},{y + dy:.1f}" for dx, dy in corners)
    return f'<polygon points="{points}" fill="{colour}"{attrs}>{inner}</polygon>'


def _legend_rows(labels: Sequence[str], *, left: int, top: int) -> list[str]:
    """One legend line per series (colour, marker, label) from (left, top) down, 18 px apart."""
    parts = []
    for index, label in enumerate(labels):
        colour, y = SERIES_COLOURS[index % len(SERIES_COLOURS)], top + 18 * index
        shape = MARKERS[index // len(SERIES_COLOURS) % len(MARKERS)]
        parts.append(f'<line x1="{left}" x2="{left + 20}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="2"/>'
                     f'{_marker(shape, left + 10, y, colour)}'
                     f'<text x="{left + 28}" y="{y + 4}">{escape(label)}</text>')
    return parts


def _axis_range(values: Sequence[float], zero: bool) -> list[float]:
    values = [v for v in values if math.isfinite(v)] or [0.0, 1.0]
    return nice_ticks(min(values + [0.0] * zero), max(values + [0.0] * zero))


def xy_chart(series: Sequence[tuple[str, Sequence[tuple[float, float]]]], *, x_label: str, y_label: str,
             lines: bool = True, zero: bool = False, width: int = 760, plot_height: int = 300) -> str:
    """Points (x, y) of each series with their axes, joined by lines or not, and a legend below.

    Args:
        series: (label, points) per series; each point's marker carries ``data-series``, ``data-x``
            and ``data-y`` (the exact values) and a tooltip.
        x_label, y_label: the axes' names (with units).
        lines: join each series' points in order of x.
        zero: both axes start at 0 (or below the data's least value when it is negative).
        width: the SVG's width; plot_height: the plot's, without the legend.

    Returns:
        An ``<svg>`` element.
    """
    left, right, top, bottom = 72, 24, 12, 46
    points = [point for _, pts in series for point in pts]
    xs, ys = _axis_range([x for x, _ in points], zero), _axis_range([y for _, y in points], zero)
    span_x, span_y = width - left - right, plot_height - top - bottom

    def place(x: float, y: float) -> tuple[float, float]:
        return (left + (x - xs[0]) / (xs[-1] - xs[0]) * span_x,
                top + span_y - (y - ys[0]) / (ys[-1] - ys[0]) * span_y)

    parts = [_svg_open(width, plot_height + 18 * len(series) + 6)]
    for tick in xs:
        px = place(tick, ys[0])[0]
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + span_y}" stroke="#ddd"/>'
                     f'<text x="{px:.1f}" y="{top + span_y + 16}" text-anchor="middle" fill="#555">{tick:g}</text>')
    for tick in ys:
        py = place(xs[0], tick)[1]
        parts.append(f'<line x1="{left}" x2="{left + span_x}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{py + 4:.1f}" text-anchor="end" fill="#555">{tick:g}</text>')
    parts.append(f'<text x="{left + span_x / 2}" y="{top + span_y + 36}" text-anchor="middle">{escape(x_label)}</text>'
                 f'<text x="14" y="{top + span_y / 2}" text-anchor="middle"'
                 f' transform="rotate(-90 14 {top + span_y / 2})">{escape(y_label)}</text>')
    for index, (label, pts) in enumerate(series):
        colour = SERIES_COLOURS[index % len(SERIES_COLOURS)]
        shape = MARKERS[index // len(SERIES_COLOURS) % len(MARKERS)]
        placed = [(x, y, *place(x, y)) for x, y in sorted(pts)]
        if lines and len(placed) > 1:
            path = " ".join(f"{px:.1f},{py:.1f}" for _, _, px, py in placed)
            parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, y, px, py in placed:
            tip = f"{label}: {x_label} {x:g}, {y_label} {y:.4g}"
            attrs = f' data-series="{escape(label)}" data-x="{x!r}" data-y="{y!r}"'
            parts.append(_marker(shape, px, py, colour, attrs=attrs, title=tip))
    parts += _legend_rows([label for label, _ in series], left=left, top=plot_height + 6)
    parts.append("</svg>")
    return "".join(parts)


def stacked_bars(names: Sequence[str], parts: Sequence[tuple[str, Sequence[float]]], *, unit: str,
                 width: int = 760) -> str:
    """One horizontal bar per name, its parts laid end to end (NaN parts take no room), its total at the end.

    Args:
        names: a label per bar.
        parts: (part label, one value per bar) per part, in the order they are stacked.
        unit: of the values, e.g. "ms".
        width: the SVG's width in px.

    Returns:
        An ``<svg>`` element; each segment has ``data-bar``, ``data-part``, ``data-value`` and a tooltip.
    """
    bar, gap, label_width, total_width = 18, 8, 230, 80
    totals = [sum(v for _, values in parts if math.isfinite(v := float(values[i]))) for i in range(len(names))]
    ticks = nice_ticks(0.0, max(totals, default=0.0) or 1.0)
    span = width - label_width - total_width
    legend_top = 4 + 18 * len(parts)
    height = legend_top + (bar + gap) * len(names) + 22
    out = [_svg_open(width, height)]
    for index, (label, _) in enumerate(parts):
        colour, y = SERIES_COLOURS[index % len(SERIES_COLOURS)], 4 + 18 * index
        out.append(f'<rect x="{label_width}" y="{y}" width="12" height="12" fill="{colour}"/>'
                   f'<text x="{label_width + 18}" y="{y + 11}">{escape(label)}</text>')
    for tick in ticks:
        tx = label_width + tick / ticks[-1] * span
        out.append(f'<line x1="{tx:.1f}" x2="{tx:.1f}" y1="{legend_top}" y2="{height - 16}" stroke="#ddd"/>'
                   f'<text x="{tx:.1f}" y="{height - 3}" text-anchor="middle" fill="#555">{tick:g}</text>')
    for row, name in enumerate(names):
        top, x = legend_top + row * (bar + gap) + gap, float(label_width)
        out.append(f'<text x="4" y="{top + bar - 5}">{escape(str(name))}</text>')
        for index, (label, values) in enumerate(parts):
            value = float(values[row])
            if not math.isfinite(value):
                continue
            size = value / ticks[-1] * span
            tip = escape(f"{name}, {label}: {value:g} {unit}")
            out.append(f'<rect x="{x:.1f}" y="{top}" width="{size:.1f}" height="{bar}"'
                       f' fill="{SERIES_COLOURS[index % len(SERIES_COLOURS)]}" data-bar="{escape(str(name))}"'
                       f' data-part="{escape(label)}" data-value="{value!r}"><title>{tip}</title></rect>')
            x += size
        out.append(f'<text x="{x + 6:.1f}" y="{top + bar - 5}" font-size="12">{totals[row]:.4g} {escape(unit)}</text>')
    out.append("</svg>")
    return "".join(out)
