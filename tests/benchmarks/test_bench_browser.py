"""tseg-bench --html as a person sees it: loaded in a real headless Chromium (tests/browser.py), no
console errors, the charts drawn, and the numbers on the page are the --json file's."""

from __future__ import annotations

import json

from click.testing import CliRunner

from tests.benchmarks.test_cli import FAST
from tests.browser import browser, severe_console_errors
from tseg.benchmarks.cli import main
from tseg.benchmarks.report_html import FIELDS
from tseg.benchmarks.stages import STAGES


def test_bench_page_in_a_real_browser(colour_onnx, tiny_coco_dir, tmp_path):
    out_json, out_html = tmp_path / "bench.json", tmp_path / "bench.html"
    args = [colour_onnx, "--sizes", "16,32", "--threads", "1", "--coco", tiny_coco_dir / "val.json", "--stages",
            "--json", out_json, "--html", out_html, *FAST]
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    driver = browser()
    try:
        driver.get(out_html.resolve().as_uri())
        errors = severe_console_errors(driver)
        assert not errors, errors
        rows = driver.execute_script(
            "return Array.from(document.querySelectorAll('#rows tbody tr')).map(tr => Object.fromEntries("
            "Array.from(tr.cells).map(td => [td.dataset.field, [td.dataset.value, td.textContent]])));")
        assert len(rows) == len(data["rows"]) == 2
        for shown, expected in zip(rows, data["rows"], strict=True):
            assert sorted(shown) == sorted(FIELDS)
            for field in ("p50_ms", "p90_ms", "p99_ms", "images_per_s", "gflops", "gflops_per_s", "miou"):
                assert float(shown[field][0]) == expected[field], field  # the exact value
            assert shown["model"][1] == expected["model"] and shown["batch"][1] == str(expected["batch"])
            assert shown["miou"][1] == f"{expected['miou']:.4f}"
        charts = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg.chart')).map(svg => [svg.getBoundingClientRect().width,"
            " svg.querySelectorAll('[data-series]').length, svg.querySelectorAll('[data-part]').length]);")
        assert charts == [[760, 2, 0], [760, 2, 0], [760, 0, len(STAGES) * 2]], charts  # latency, mIoU, stages
        points = driver.execute_script(
            "return Array.from(document.querySelectorAll('svg.chart')[1].querySelectorAll('[data-series]'))"
            ".map(p => [parseFloat(p.dataset.x), parseFloat(p.dataset.y)]);")
        assert sorted(points) == sorted([r["miou"], r["images_per_s"]] for r in data["rows"])
        machine = driver.find_element("id", "machine").text
        assert data["machine"]["cpu"] in machine and f"threads: {data['machine']['threads']}" in machine
        driver.save_screenshot(str(tmp_path / "bench.png"))
        assert (tmp_path / "bench.png").stat().st_size > 10_000
    finally:
        driver.quit()
