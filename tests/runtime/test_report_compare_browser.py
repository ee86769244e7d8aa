"""tseg-report's page as a person sees it: loaded in a real headless Chromium, every picture decodes,
no console errors, the numbers on the page are the two report.json's and their differences, and the
per-image table sorts by the change.

The browser: tests/browser.py (skips without one, fails instead under TSEG_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import json
import math

from click.testing import CliRunner

from tests.browser import assert_column_sorts, browser, severe_console_errors
from tseg.runtime.report.cli import main as report_cli


def _shown(value: float | None) -> str:
    return "\u2013" if value is None or math.isnan(value) else f"{value:.4f}"


def _change(value: float) -> str:
    return "\u2013" if math.isnan(value) else f"{value:+.4f}"


def _collect(driver, selector: str, key: str) -> dict[str, str]:
    """{``key`` (a JavaScript expression of the element ``e``): its text} for every element matching ``selector``."""
    script = f"const o = {{}}; document.querySelectorAll(arguments[0]).forEach(e => o[{key}] = e.textContent);"
    return driver.execute_script(script + " return o;", selector)


def test_comparison_page_in_a_real_browser(report_pair, tmp_path):
    out = tmp_path / "compare"
    args = [report_pair.a, report_pair.b, "--out", out, "--images", "3"]
    result = CliRunner().invoke(report_cli, [str(arg) for arg in args])
    assert result.exit_code == 0, result.output
    a = json.loads((report_pair.a / "report.json").read_text())["model_alone"]  # A ran without the CRF
    b = json.loads((report_pair.b / "report.json").read_text())["after_crf"]
    numbers = json.loads((out / "comparison.json").read_text())
    driver = browser()
    try:
        driver.get((out / "index.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        assert len(images) == 2 * len(numbers["worse"] + numbers["better"]) > 0, images
        assert all(complete and width > 0 for _, complete, width in images), images
        errors = severe_console_errors(driver)
        assert not errors, errors

        scores = _collect(driver, "[data-score]", "e.dataset.score")
        expected = {}
        for key in ("miou", "pixel_accuracy"):
            expected |= {f"a_{key}": _shown(a[key]), f"b_{key}": _shown(b[key]),
                         f"change_{key}": _change(b[key] - a[key])}
        assert scores == expected
        iou = _collect(driver, "[data-iou]", "e.dataset.iou + '/' + e.dataset.class")
        expected = {}
        for name in a["iou"]:
            expected |= {f"a/{name}": _shown(a["iou"][name]), f"b/{name}": _shown(b["iou"][name]),
                         f"change/{name}": _change(b["iou"][name] - a["iou"][name])}
        assert iou == expected

        assert_column_sorts(driver, "change", 3)
        driver.save_screenshot(str(tmp_path / "compare.png"))
        assert (tmp_path / "compare.png").stat().st_size > 10_000
    finally:
        driver.quit()
