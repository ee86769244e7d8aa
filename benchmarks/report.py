"""tseg-bench's output: a terminal table, JSON (one object per row, machine info) and Markdown.

The method line (how the figures were measured) and the machine line go under every table,
so a pasted table always says on which machine, with how many threads, and what each
statistic is.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from tseg.benchmarks.machine import describe_machine
from tseg.benchmarks.rows import Row
from tseg.benchmarks.stats import TimingPolicy

COLUMNS = ("model", "precision", "device", "size", "batch", "status", "MB", "p50 ms", "p90 ms", "p99 ms",
           "images/s", "GFLOPs/img", "GFLOP/s", "% peak", "mIoU")


@dataclass
class BenchReport:
    """Everything one tseg-bench run found.

    Attributes:
        rows: the benchmark rows, in table order.
        machine: :func:`~tseg.benchmarks.machine.machine_info`.
        policy: how the rows were timed.
        peaks: "KIND GEMM on DEVICE" -> GFLOP/s (the fastest of its GEMMs), or a note why it is missing.
        peak_gemms: "KIND GEMM on DEVICE" -> each GEMM timed for it, "OP MxKxN: GFLOP/s" (or why it failed).
        sections: extra tables (--stages, --crf): title -> (header, rows, method line).
    """

    rows: list[Row]
    machine: dict[str, object]
    policy: TimingPolicy
    peaks: dict[str, float | str] = field(default_factory=dict)
    peak_gemms: dict[str, list[str]] = field(default_factory=dict)
    sections: dict[str, tuple[Sequence[str], list[list[str]], str]] = field(default_factory=dict)

    def method(self) -> str:
        return (
            "Latency of one batch of random input: ONNX Runtime sessions (or OpenVINO compiled models) as"
            " tseg-infer opens them (IOBinding on a GPU, host copies timed), PyTorch eager under inference_mode; "
            f"{self.policy.describe()}. p50/p90/p99: percentiles of the timed runs; images/s: images of all timed"
            " runs / their time; GFLOPs/img: Conv, ConvTranspose, MatMul, Gemm counted from the graph at the"
            " row's size (multiply-add = 2, no bias adds); GFLOP/s: the GFLOPs on real input (convolution taps on zero"
            " padding, which the kernels skip, left out) x batch / p50; % peak: GFLOP/s over"
            " this machine's peak, the fastest of a few GEMMs (M x K x N: two square ones and a 3x3 convolution's"
            " im2col shape, each at its fastest run) through the row's engine (ONNX Runtime, or OpenVINO for its rows)"
            " on the same device and threads, timed among the rows (FP32 rows: MatMul; INT8 rows: MatMulInteger and"
            " QLinearMatMul, uint8 x int8, through OpenVINO a Q/DQ MatMul; bf16 rows: MatMul in bfloat16; on a GPU"
            " the GEMMs' input and output stay on the device)."
            " mIoU (--coco): the split scored as tseg-infer --eval scores it (model alone, no CRF), every image"
            " resized to the model's own input size, so all rows of one file share it; the eager rows through the"
            " same pre- and post-processing around PyTorch's forward pass."
        )


def _number(value: float | None, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def cells(row: Row) -> list[str]:
    """A row's table cells (the failure reason goes under the table)."""
    return [
        row.model, row.precision, row.device, f"{row.size[0]}x{row.size[1]}", str(row.batch),
        "ran" if row.status == "ran" else "failed", _number(row.file_mb, 1), _ms(row.p50_ms), _ms(row.p90_ms),
        _ms(row.p99_ms), _number(row.images_per_s, 1), _number(row.gflops, 2), _number(row.gflops_per_s, 1),
        "-" if row.peak_fraction is None else f"{100 * row.peak_fraction:.0f}%", _number(row.miou, 4),
    ]


def footnotes(rows: list[Row]) -> list[str]:
    """Why rows failed and why figures are missing, one line each (repeated notes once)."""
    failed: dict[tuple[str, str, str], list[str]] = {}
    for row in rows:
        if row.status != "ran":
            where = f"{row.size[0]}x{row.size[1]}/{row.batch}"
            failed.setdefault((row.model, row.device, row.status), []).append(where)
    lines = [f"{model} {device} (size/batch {', '.join(which)}): {status}" for (model, device, status), which
             in failed.items()]
    for note in dict.fromkeys(note for row in rows for note in row.notes):
        lines.append(f"note: {note}")
    return lines


def failure_lines(report: BenchReport) -> list[str]:
    """One line per row that could not run (the table's rows, then the --stages and --crf rows that failed)."""
    lines = [f"{row.where}: {_reason(row.status)}" for row in report.rows if row.status != "ran"]
    for title, (header, table, _) in report.sections.items():
        for cells_ in table:
            failed = [i for i, cell in enumerate(cells_) if cell.startswith("failed: ")]
            if failed:
                shown = zip(header[: failed[0]], cells_[: failed[0]], strict=True)
                where = ", ".join(f"{name} {cell}" for name, cell in shown if cell != "-")
                lines.append(f"{title}, {where}: " + "; ".join(f"{header[i]}: {_reason(cells_[i])}" for i in failed))
    return lines


def _reason(status: str) -> str:
    """"failed: WHY" -> "WHY"."""
    return status.removeprefix("failed: ")


def peaks_line(report: BenchReport) -> str:
    """"Peaks measured (GFLOP/s): KIND GEMM on DEVICE X (OP MxKxN: Y, ...), ..." """
    shown = []
    for name, value in report.peaks.items():
        gemms = report.peak_gemms.get(name, [])
        detail = f" (best of {', '.join(gemms)})" if gemms else ""
        shown.append(f"{name} {value:.0f}{detail}" if isinstance(value, float) else f"{name}: {value}")
    return "Peaks measured (GFLOP/s): " + ("; ".join(shown) if shown else "none") + "."


def _aligned(header: Sequence[str], table: list[list[str]]) -> list[str]:
    rows = [list(header), *table]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in rows]


def _markdown(header: Sequence[str], table: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    return lines + ["| " + " | ".join(cell.replace("|", "\\|") for cell in r) + " |" for r in table]


def format_text(report: BenchReport) -> str:
    """The terminal table, footnotes, extra sections, method and machine lines."""
    lines = _aligned(COLUMNS, [cells(r) for r in report.rows]) + footnotes(report.rows)
    for title, (header, table, method) in report.sections.items():
        lines += ["", title, *_aligned(header, table), method]
    lines += ["", "Method: " + report.method(), peaks_line(report)]
    lines.append("Machine: " + describe_machine(report.machine))
    return "\n".join(lines) + "\n"


def format_markdown(report: BenchReport) -> str:
    """What the README pastes: the table, the method and the machine."""
    lines = _markdown(COLUMNS, [cells(r) for r in report.rows])
    notes = footnotes(report.rows)
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    for title, (header, table, method) in report.sections.items():
        lines += ["", f"**{title}**", "", *_markdown(header, table), "", method]
    lines += ["", f"Method: {report.method()} {peaks_line(report)}", "",
              f"Machine: {describe_machine(report.machine)}."]
    return "\n".join(lines) + "\n"


def _jsonable(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, tuple):
        return list(value)
    return value


def format_json(report: BenchReport) -> str:
    """{"machine", "method", "peaks", "rows": [one object per row], "sections"} as JSON."""
    rows = [{k: _jsonable(v) for k, v in dataclasses.asdict(row).items()} for row in report.rows]
    sections = {
        title: [dict(zip(header, r, strict=True)) for r in table]
        for title, (header, table, _) in report.sections.items()
    }
    data = {
        "machine": report.machine,
        "method": report.method(),
        "policy": dataclasses.asdict(report.policy),
        "peaks_gflops_per_s": {k: _jsonable(v) for k, v in report.peaks.items()},
        "peak_gemms": report.peak_gemms,
        "rows": rows,
        "sections": sections,
    }
    return json.dumps(data, indent=2) + "\n"
