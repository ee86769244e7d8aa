"""tseg-bench --html's page from a hand-made report: the table's numbers, the charts' points, the machine."""

from __future__ import annotations

import math
import re

from tseg.benchmarks.report import BenchReport
from tseg.benchmarks.report_html import FIELDS, format_html
from tseg.benchmarks.rows import Row
from tseg.benchmarks.stages import STAGE_HEADER, STAGE_METHOD, STAGE_TITLE, STAGES
from tseg.benchmarks.stats import TimingPolicy

MACHINE = {"cpu": "Test CPU <8 cores>", "physical_cores": 8, "logical_cpus": 16, "usable_cpus": 16, "threads": 4,
           "gpu": None, "onnxruntime": "onnxruntime 1.0", "load_average": 0.5}


def row(model: str, size: int, batch: int, p50: float | None, *, miou: float | None = 0.61, **more) -> Row:
    figures = {} if p50 is None else {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.2,
                                      "images_per_s": 1000 * batch / p50, "file_mb": 12.5, "gflops": 0.75}
    return Row(model=model, path=f"/m/{model}", engine="onnxruntime", precision="fp32", device="cpu",
               size=(size, size), batch=batch, miou=miou, **figures, **more)


def report(*, stages: bool = True, miou: float | None = 0.61) -> BenchReport:
    rows = [row("a.onnx", 256, 1, 3.25, miou=miou), row("a.onnx", 512, 1, 12.5, miou=miou),
            row("b<int8>.onnx", 256, 1, 1.0 / 3, miou=miou), row("b<int8>.onnx", 512, 1, None, miou=None,
                                                                  status="failed: out of memory")]
    sections = {}
    if stages:
        ran = ["a.onnx", "cpu", "256x256", "0.5", "1.0", "3.0", "0.2", "4.0", "0.3", "9.0", "80.0", "50.0", "ran"]
        failed = ["b.onnx", "cpu", "256x256", *["-"] * (len(STAGES) + 3), "failed: no"]
        sections[STAGE_TITLE] = (STAGE_HEADER, [ran, failed], STAGE_METHOD)
    return BenchReport(rows, MACHINE, TimingPolicy(), {"fp32 GEMM on cpu": 100.0}, {}, sections)


def _attrs(element: str) -> dict[str, str]:
    return dict(re.findall(r'(data-[a-z]+)="([^"]*)"', element))


def test_the_table_holds_each_rows_exact_values():
    page = format_html(report())
    body = page.split('<table id="rows"', 1)[1].split("</tbody>", 1)[0]
    rows = [re.findall(r"<td[^>]*>", tr) for tr in body.split("<tr>")[2:]]  # after the header's row
    assert len(rows) == 4 and all(len(cells) == len(FIELDS) for cells in rows)
    first = {_attrs(cell)["data-field"]: _attrs(cell)["data-value"] for cell in rows[0]}
    assert float(first["p50_ms"]) == 3.25 and float(first["images_per_s"]) == 1000 / 3.25
    assert float(first["p90_ms"]) == 3.25 * 1.1 and first["size"] == str(256 * 256) and first["miou"] == "0.61"
    third = {_attrs(cell)["data-field"]: _attrs(cell)["data-value"] for cell in rows[2]}
    assert float(third["p50_ms"]) == 1.0 / 3  # the exact float, though the cell shows 0.33
    failed = {_attrs(cell)["data-field"]: _attrs(cell)["data-value"] for cell in rows[3]}
    assert failed["status"] == "failed" and failed["p50_ms"] == "" and failed["miou"] == ""
    assert "b&lt;int8&gt;.onnx" in page and "b<int8>" not in page  # names are escaped
    assert "b&lt;int8&gt;.onnx cpu (size/batch 512x512/1): failed: out of memory" in page  # the footnote


def test_the_charts_have_a_point_per_row_that_ran_and_the_stages_as_bars():
    page = format_html(report())
    latency, accuracy = page.split("<h2>Latency (p50) per input size</h2>")[1].split("<h2>Images/s against mIoU</h2>")
    points = [_attrs(m) for m in re.findall(r"<(?:circle|rect|polygon)[^>]*data-series[^>]*>", latency)]
    b = "b&lt;int8&gt;.onnx fp32 cpu"
    assert sorted((p["data-series"], float(p["data-x"]), float(p["data-y"])) for p in points) == [
        ("a.onnx fp32 cpu", 256.0, 3.25), ("a.onnx fp32 cpu", 512.0, 12.5), (b, 256.0, 1 / 3)]
    assert latency.count("<polyline") == 1  # a's two sizes joined; b has one point
    scatter = [_attrs(m) for m in re.findall(r"<circle[^>]*data-series[^>]*>|<rect[^>]*data-series[^>]*>",
                                              accuracy.split("<h2>")[0])]
    assert sorted((float(p["data-x"]), float(p["data-y"])) for p in scatter) == sorted(
        [(0.61, 1000 / 3.25), (0.61, 1000 / 12.5), (0.61, 3000.0)])
    stages = page.split(f"<h2>{STAGE_TITLE}</h2>")[1].split("<h2>")[0]
    bars = [_attrs(m) for m in re.findall(r"<rect[^>]*data-part[^>]*>", stages)]
    assert [(b["data-bar"], b["data-part"], float(b["data-value"])) for b in bars] == [
        ("a.onnx cpu 256x256", stage, value) for stage, value in zip(STAGES, (0.5, 1.0, 3.0, 0.2, 4.0, 0.3),
                                                                       strict=True)]
    assert "9 ms" in stages  # the bar's total
    assert "Test CPU &lt;8 cores&gt; (8 cores / 16 logical CPUs, 16 usable), threads: 4" in page


def test_without_mIoU_or_stages_the_page_says_so_and_draws_no_empty_chart():
    page = format_html(report(stages=False, miou=None))
    assert "no mIoU: run tseg-bench with --coco" in page and STAGE_TITLE not in page
    assert page.count("<svg") == 1  # the latency chart only


def test_the_page_is_self_contained():
    page = format_html(report())
    assert not re.search(r'(src|href)="(https?:)?//', page) and "@import" not in page and "url(" not in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not any(math.isnan(float(v)) for v in re.findall(r'data-(?:x|y|value)="([-0-9.e]+)"', page))
