"""The report as a person sees it: loaded in a real headless Chromium (Selenium with Debian's
chromium and chromium-driver), every image decodes, no console errors, the numbers on the page are
eval.json's, and the per-image table sorts.

The browser: tests/browser.py (skips without one, fails instead under TSEG_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.browser import assert_column_sorts, browser, severe_console_errors
from tests.onnx_models import write_colour_model
from tseg.runtime.infer.cli import main as infer_cli


@pytest.fixture(scope="module")
def report(tiny_coco_dir, tmp_path_factory) -> tuple[Path, Path]:
    """A report with the CRF on the tiny split: (report folder, out folder with eval.json)."""
    root = tmp_path_factory.mktemp("report")
    model = write_colour_model(root / "model" / "colour.onnx")
    args = ["--coco", tiny_coco_dir / "val.json", "--model", model, "--out", root / "out", "--eval", "--crf",
            "--report", root / "report", "--report-images", "1", "-q"]
    result = CliRunner().invoke(infer_cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return root / "report", root / "out"


def _shown(value: float) -> str:
    return "\u2013" if value is None or math.isnan(value) else f"{value:.4f}"


def test_report_page_in_a_real_browser(report):
    folder, out = report
    driver = browser()
    try:
        driver.get((folder / "index.html").resolve().as_uri())
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth]);")
        assert len(images) == 2, images  # the worst and the best
        assert all(complete and width > 0 for _, complete, width in images), images
        errors = severe_console_errors(driver)
        assert not errors, errors

        scores = json.loads((out / "eval.json").read_text())
        shown = driver.execute_script(
            "const o = {}; document.querySelectorAll('[data-score]').forEach(e => o[e.dataset.score] = e.textContent);"
            " return o;")
        assert shown == {key: _shown(scores[key])
                         for key in ("miou", "pixel_accuracy", "crf_miou", "crf_pixel_accuracy")}
        iou = driver.execute_script(
            "const o = {}; document.querySelectorAll('[data-iou]').forEach(e => o[e.dataset.iou] = e.textContent);"
            " return o;")
        expected = {name: _shown(value) for name, value in scores["iou"].items()}
        expected.update({f"crf_{name}": _shown(value) for name, value in scores["crf_iou"].items()})
        assert iou == expected

        assert_column_sorts(driver, "mIoU after the CRF", 3)
        driver.save_screenshot(str(folder.parent / "report.png"))
        assert (folder.parent / "report.png").stat().st_size > 10_000
    finally:
        driver.quit()
