"""The harness's own checks, on a fake CLI that misbehaves in one way at a time (no tseg involved).

A harness that missed a traceback, a write outside out/, a changed input, a memory blow-up
or a hang would let defects through; each behaviour here must be caught, and a clean refusal
must pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.hardening.cases import Case, Fixtures, Sandbox
from tests.hardening.checks import CaseResult
from tests.hardening.runner import RunSettings, run_case, totals

FAKE_CLI = r"""
import os, signal, sys, time
what = sys.argv[1]
if what == "clean":
    sys.exit("Error: bad input: expected x, got y")
if what == "traceback":
    raise ValueError("boom")
if what == "two-lines":
    print("WARNING: something", file=sys.stderr)
    sys.exit("Error: bad input")
if what == "accepts":
    print("wrote 1 file")
    sys.exit(0)
if what == "exit-2":
    sys.exit(2)
if what == "stdout":
    print("banner")
    sys.exit("Error: bad input")
if what == "writes-outside":
    open("inputs/new.png", "w").write("x")
    sys.exit("Error: bad input")
if what == "writes-home":
    os.makedirs(os.path.join(os.environ["HOME"], ".cache"))
    open(os.path.join(os.environ["HOME"], ".cache", "x"), "w").write("x")
    sys.exit("Error: bad input")
if what == "writes-out":
    os.makedirs("out/labels")
    open("out/labels/a.png", "w").write("x")
    sys.exit("Error: bad input")
if what == "changes-input":
    open("inputs/photo.jpg", "a").write("x")
    sys.exit("Error: bad input")
if what == "removes-input":
    os.remove("inputs/photo.jpg")
    sys.exit("Error: bad input")
if what == "chmods-input":
    os.chmod("inputs/photo.jpg", 0o600)
    sys.exit("Error: bad input")
if what == "allocates":
    bytearray(2 << 30)
if what == "touches":
    block = bytearray(300 << 20)
    block[::4096] = b"x" * len(block[::4096])
    sys.exit("Error: bad input")
if what == "hangs":
    time.sleep(60)
if what == "crashes":
    os.kill(os.getpid(), signal.SIGSEGV)
"""


@pytest.fixture(scope="module")
def fake_settings(tmp_path_factory) -> RunSettings:
    work = tmp_path_factory.mktemp("harness")
    script = work / "fake_cli.py"
    script.write_text(FAKE_CLI)
    return RunSettings(
        work=work,
        timeout_s=3,
        data_limit_mib=1024,
        rss_limits_mib={"infer": 200},
        launcher=lambda tool: [sys.executable, str(script)],
    )


def _run(what: str, settings: RunSettings, *, expect_ok: bool = False) -> CaseResult:
    def build(box: Sandbox) -> list[str]:
        box.write("photo.jpg", b"\xff\xd8 not really a jpeg")
        return [what]

    case = Case(f"fake/{what}", "infer", build, expect_ok=expect_ok)
    return run_case(case, Fixtures(Path("-"), Path("-"), Path("-")), settings)


@pytest.mark.parametrize(
    "what, problem",
    [
        ("traceback", "printed a traceback"),
        ("two-lines", "2 lines on stderr"),
        ("accepts", "exit code 0"),
        ("exit-2", "exit code 2"),
        ("stdout", "printed on stdout"),
        ("writes-outside", "created outside out/: inputs/new.png"),
        ("writes-home", "wrote into $HOME: home/.cache/x"),
        ("changes-input", "changed or removed inputs: inputs/photo.jpg"),
        ("removes-input", "changed or removed inputs: inputs/photo.jpg"),
        ("chmods-input", "changed or removed inputs: inputs/photo.jpg"),
        ("allocates", "MemoryError"),
        ("touches", "peak RSS"),
        ("hangs", "timed out"),
        ("crashes", "killed by SIGSEGV"),
    ],
)
def test_each_misbehaviour_is_caught(what, problem, fake_settings):
    result = _run(what, fake_settings)
    assert any(problem in found for found in result.problems()), result.describe()


@pytest.mark.parametrize("what", ["clean", "writes-out"])
def test_a_clean_refusal_passes(what, fake_settings):
    result = _run(what, fake_settings)
    assert result.problems() == [], result.describe()
    assert result.one_line_error


def test_peak_rss_is_the_cli_own_not_the_harness(fake_settings):
    # A forked child inherits its parent's RSS high-water mark across exec: a big harness
    # process must not make a small CLI look big.
    ballast = bytearray(400 << 20)
    ballast[:: 1 << 12] = b"x" * len(ballast[:: 1 << 12])
    result = _run("clean", fake_settings)
    del ballast
    assert 0 < result.peak_rss_mib < fake_settings.rss_limits_mib["infer"], result.describe()


def test_controls_must_exit_zero(fake_settings):
    assert _run("accepts", fake_settings, expect_ok=True).problems() == []
    assert "control exited 1, expected 0" in _run("clean", fake_settings, expect_ok=True).problems()


def test_totals_count_each_failure_class(fake_settings):
    results = [_run(what, fake_settings) for what in ("clean", "traceback", "accepts", "writes-outside")]
    table = totals(results)
    assert (table["cases"], table["passed"], table["one-line errors"]) == (4, 1, 2)
    assert (table["tracebacks"], table["exit 0 (bad input accepted)"], table["writes outside out/ (not $HOME)"]) == (
        1,
        1,
        1,
    )
