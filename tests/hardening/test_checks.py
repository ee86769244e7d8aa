"""The harness's own checks, on a fake CLI that misbehaves in one way at a time (no tseg involved).

A harness that missed a traceback, a write outside out/, a changed input, a memory blow-up
or a hang would let defects through; each behaviour here must be caught, and a clean refusal
must pass.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.hardening.cases import Case, Fixtures, Sandbox, Setup, SkipCase
from tests.hardening.checks import CaseResult, snapshot
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
if what == "auto-note":  # tseg-infer's --device auto note must not come before an error
    print("note: --device auto: running on OpenVINO CPU (f32); --device cpu runs ONNX Runtime instead",
          file=sys.stderr)
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
if what == "leaves-temp":
    open("out/.result.csv.p1.x1y2z3.tseg-tmp", "w").write("half")
    sys.exit(0)
if what == "cleans-temp":
    for name in os.listdir("out"):
        if name.endswith(".tseg-tmp"):
            os.remove(os.path.join("out", name))
    sys.exit(0)
if what == "ort-noise":
    print("\x1b[1;31m2026-01-01 10:00:00.1 [E:onnxruntime:, x.cc:1 Run] boom\x1b[m", file=sys.stderr)
    sys.exit(0)
if what == "writes-through-alias":
    open("out/alias/new.png", "w").write("x")
    sys.exit("Error: bad input")
if what == "lists-locked":
    try:
        os.listdir("inputs/locked")
    except PermissionError:
        sys.exit("Error: cannot list inputs/locked")
    sys.exit(0)
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
        ("auto-note", "2 lines on stderr"),
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


NO_FIXTURES = Fixtures(Path("-"), Path("-"), Path("-"))


def _run_built(name: str, build, settings: RunSettings, **options) -> CaseResult:
    return run_case(Case(f"fake/{name}", "infer", build, **options), NO_FIXTURES, settings)


def test_a_temp_file_left_under_out_is_caught_and_a_planted_one_may_go(fake_settings):
    def planted(what: str):
        def build(box: Sandbox) -> list[str]:
            (box.out / ".result.csv.p99999999.old.tseg-tmp").write_text("from a killed run")
            return [what]

        return build

    left = _run_built("leaves-temp", planted("leaves-temp"), fake_settings, expect_ok=True, checks=("no-temp-files",))
    assert any("temp files left under out/" in p for p in left.problems()), left.describe()
    cleaned = _run_built(
        "cleans-temp", planted("cleans-temp"), fake_settings, expect_ok=True, checks=("no-temp-files",)
    )
    assert cleaned.problems() == [], cleaned.describe()
    kept = _run_built("cleans-temp-kept", planted("cleans-temp"), fake_settings, expect_ok=True)
    assert any("changed or removed inputs: out/.result.csv" in p for p in kept.problems()), kept.describe()


def test_a_refusal_after_writing_under_out_is_caught(fake_settings):
    result = _run_built("writes-out", lambda box: ["writes-out"], fake_settings, checks=("nothing-written",))
    assert any("wrote under out/ before refusing: out/labels/a.png" in p for p in result.problems()), result.describe()


def test_stdout_and_onnx_runtime_noise_are_caught_in_controls_too(fake_settings):
    noisy = _run_built("ort-noise", lambda box: ["ort-noise"], fake_settings, expect_ok=True)
    assert "ONNX Runtime log lines or ANSI colour codes on stderr" in noisy.problems(), noisy.describe()
    talks = _run_built("accepts", lambda box: ["accepts"], fake_settings, expect_ok=True, checks=("stdout-empty",))
    assert any("printed on stdout: 'wrote 1 file'" in p for p in talks.problems()), talks.describe()


def test_a_bind_mount_is_the_childs_alone(fake_settings):
    def build(box: Sandbox) -> list[str]:
        box.bind(box.write("photos/a.jpg", "photo").parent, box.out / "alias")
        return ["writes-through-alias"]

    result = _run_built("bind", build, fake_settings)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.problems() == ["created outside out/: inputs/photos/new.png"], result.describe()
    assert not (fake_settings.work / "cases" / "fake__bind" / "out" / "alias" / "a.jpg").exists()


def test_a_chmod_000_folder_is_unreadable_to_the_child_even_as_root(fake_settings):
    def build(box: Sandbox) -> list[str]:
        box.unreadable(box.inputs / "locked")
        return ["lists-locked"]

    result = _run_built("locked", build, fake_settings)
    if result.skipped:
        pytest.skip(result.skipped)
    assert result.problems() == [] and "cannot list" in result.stderr, result.describe()


def test_a_case_this_machine_cannot_build_is_skipped_not_passed(fake_settings):
    def build(box: Sandbox) -> list[str]:
        raise SkipCase("no device nodes: mknod needs root")

    result = _run_built("skip", build, fake_settings)
    assert result.skipped and result.problems() == []
    table = totals([result, _run("clean", fake_settings)])
    assert (table["cases"], table["passed"], table["skipped (no device nodes)"]) == (2, 1, 1)


def test_a_setup_command_runs_first_and_must_succeed(fake_settings):
    setup_ok = Setup("infer", lambda box: ["leaves-temp"])
    result = _run_built("setup", lambda box: ["clean"], fake_settings, setup=setup_ok)
    assert result.problems() == [], result.describe()  # the setup's out/ files are allowed
    failing = _run_built(
        "setup-fails", lambda box: ["clean"], fake_settings, setup=Setup("infer", lambda box: ["clean"])
    )
    assert failing.build_error and "the setup command" in failing.build_error


def test_either_failure_count_may_be_accepted(fake_settings):
    result = _run_built("either", lambda box: ["clean"], fake_settings, failures=(0, 1))
    assert result.problems() == [], result.describe()


def test_a_sparse_giant_is_snapshotted_quickly_and_a_change_is_seen(tmp_path):
    giant = tmp_path / "model.onnx"
    with open(giant, "wb") as handle:
        handle.truncate(4 << 30)
    before = snapshot(tmp_path)
    with open(giant, "r+b") as handle:
        handle.seek(2 << 30)
        handle.write(b"x")
    assert snapshot(tmp_path) != before


def test_the_temp_suffix_is_tsegs():
    from tests.hardening import checks
    from tseg.runtime.files import TEMP_SUFFIX

    assert checks.TEMP_SUFFIX == TEMP_SUFFIX
