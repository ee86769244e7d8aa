"""A headless Chromium for the tests that look at tseg's pages (the report, tseg-bench --html).

Selenium with Debian's chromium and chromium-driver. Where Chromium is missing the tests skip,
except when TSEG_REQUIRE_BROWSER=1: CI (.ci/run) installs chromium and sets it, so there a
missing browser fails instead of skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest

REQUIRED = os.environ.get("TSEG_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
DRIVER = shutil.which("chromedriver")


def browser():
    """A headless Chromium through Selenium, logging the console; skips (or fails in CI) without one."""
    missing = [name for name, found in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if not found]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("selenium (pip install 'tseg[dev]')")
    if missing:
        reason = (f"no browser to load the page: {', '.join(missing)} missing"
                  " (apt-get install chromium chromium-driver)")
        if REQUIRED:
            pytest.fail(reason + "; TSEG_REQUIRE_BROWSER=1 needs it")
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    flags = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,2400")
    for flag in flags:
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))


def severe_console_errors(driver) -> list:
    """The page's console entries at level SEVERE (errors)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def assert_column_sorts(driver, column: str, rows: int) -> None:
    """Clicking the ``#images`` table's header ``column`` sorts its rows ascending, a second click
    descending (by each cell's ``data-value``); the table has ``rows`` rows."""
    header = driver.execute_script(
        "return Array.from(document.querySelectorAll('#images th'))"
        ".findIndex(th => th.textContent === arguments[0]);",
        column)
    assert header >= 0, f"no column {column!r}"
    th = driver.find_elements("css selector", "#images th")[header]
    for clicks, order in ((1, sorted), (2, lambda v: sorted(v, reverse=True))):
        th.click()
        values = driver.execute_script(
            "return Array.from(document.querySelectorAll('#images tbody tr'))"
            ".map(tr => parseFloat(tr.cells[arguments[0]].dataset.value));", header)
        assert values == order(values) and len(values) == rows, (clicks, values)
