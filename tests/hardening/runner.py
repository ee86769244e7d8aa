"""Runs the bad-input corpus through the tseg CLIs, each case in a subprocess under a memory limit.

As a program it prints the totals table (and, with ``--failures``, every failing case)::

    python -m tests.hardening.runner --work /tmp/hardening
    python -m tests.hardening.runner --tiny-model M.onnx --checkpoint C.pt --coco DIR --work /tmp/h
    python -m tests.hardening.runner --code /tmp/tseg-before --work /tmp/h-before   # other code

Without the three fixture options it trains and exports the tiny model itself (a minute).
``--code TREE`` runs the CLIs against another checkout's runtime/, train/, export/ and benchmarks/
(through a PYTHONPATH shim; the corpus is still generated with this checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tests.hardening.cases import Case, Fixtures, Sandbox, SkipCase
from tests.hardening.checks import CaseResult, compare, extra_problems, snapshot
from tests.hardening.child import ChildRun, child_env, run_child

# The child's data segment (heap and private mappings); torch's import needs ~1 GiB of it.
DATA_LIMIT_MIB = 3072
# Peak RSS a case may reach: the runtime alone needs ~250 MiB, torch's CLIs ~1 GiB (tseg-bench too with --checkpoint).
RSS_LIMITS_MIB = {"infer": 1024, "plot": 1024, "train": 2048, "export": 2048, "bench": 2048, "report": 1024}
TIMEOUT_S = 90.0
# What each console script runs (pyproject.toml's [project.scripts]), for `python -m` where a script is missing.
MODULES = {"infer": "tseg.runtime.infer.cli", "train": "tseg.train.cli", "export": "tseg.export.cli",
           "bench": "tseg.benchmarks.cli", "report": "tseg.runtime.report.cli"}


def console_script(tool: str) -> list[str]:
    """The installed ``tseg-<tool>`` entry point beside this interpreter; ``python -m`` its module where an
    editable install predates the script (it runs the same ``main``)."""
    script = Path(sys.executable).parent / f"tseg-{tool}"
    if not script.exists() and tool in MODULES:
        return [sys.executable, "-m", MODULES[tool]]
    return [str(script)]


@dataclass(frozen=True)
class RunSettings:
    """How cases are run.

    Attributes:
        work: folder for the sandboxes (one per case) and the logs.
        timeout_s: per case.
        data_limit_mib: RLIMIT_DATA of the child.
        rss_limits_mib: tool -> peak RSS above which a case fails.
        pythonpath: prepended to the child's PYTHONPATH (the shim for ``--code``).
        launcher: tool -> command prefix (default: the console scripts).
    """

    work: Path
    timeout_s: float = TIMEOUT_S
    data_limit_mib: int = DATA_LIMIT_MIB
    rss_limits_mib: Mapping[str, float] = field(default_factory=lambda: dict(RSS_LIMITS_MIB))
    pythonpath: str | None = None
    launcher: Callable[[str], list[str]] = console_script


def run_case(case: Case, fixtures: Fixtures, settings: RunSettings) -> CaseResult:
    """Builds the case's sandbox, runs its CLI there (after its setup command), and records what happened."""
    rss_limit = case.rss_limit_mib or settings.rss_limits_mib[case.tool]
    result = CaseResult(case.name, case.tool, case.expect_ok, failures=case.failures, rss_limit_mib=rss_limit)
    root = settings.work / "cases" / case.slug
    _remove_sandbox(root)
    box = Sandbox(root, fixtures)
    try:
        args = case.build(box)
        setup_args = case.setup.build(box) if case.setup is not None else None
    except SkipCase as skip:
        result.skipped = str(skip)
        _remove_sandbox(root)
        return result
    except Exception as err:  # a harness bug: reported as the case's failure, never hidden
        result.build_error = f"{type(err).__name__}: {err}"
        return result
    before = snapshot(box.root)
    if setup_args is not None and not _run_setup(case, box, setup_args, settings, result):
        return result
    run = _run(case.tool, args, box, case, settings, settings.work / "logs" / case.slug)
    for name in ("skipped", "returncode", "peak_rss_mib", "timed_out", "seconds", "stdout", "stderr", "stderr_lines"):
        setattr(result, name, getattr(run, name))
    result.build_error = run.error
    after = snapshot(box.root)
    result.outside, result.changed = compare(before, after)
    if not result.skipped and not result.build_error:
        result.extra_problems = extra_problems(case.checks, result, before, after)
        result.extra_problems += case.verify(box.root) if case.verify is not None else []
    if not result.problems():  # a failing case's sandbox stays for inspection; a passing one is 50 MB at most
        _remove_sandbox(root)
    return result


def _run(tool: str, args: list[str], box: Sandbox, case: Case, settings: RunSettings, logs: Path) -> ChildRun:
    """Runs one command of ``case`` in its sandbox."""
    env = child_env(box, settings.work, settings.pythonpath, dict(case.env))
    return run_child(settings.launcher(tool), args, box, logs=logs, env=env, data_limit_mib=settings.data_limit_mib,
                     timeout_s=case.timeout_s or settings.timeout_s)  # fmt: skip


def _run_setup(case: Case, box: Sandbox, args: list[str], settings: RunSettings, result: CaseResult) -> bool:
    """Runs the case's setup command; False (the result says why) when it did not exit 0."""
    run = _run(case.setup.tool, args, box, case, settings, settings.work / "logs" / case.slug / "setup")
    if run.skipped or run.error:
        result.skipped, result.build_error = run.skipped, run.error
        return False
    if run.returncode != 0:
        last = run.stderr.strip().splitlines()[-1][:200] if run.stderr.strip() else ""
        timing = f"timed out after {run.seconds:.0f} s" if run.timed_out else f"exited {run.returncode}"
        result.build_error = f"the setup command (tseg-{case.setup.tool}) {timing}: {last}"
        return False
    return True


def _remove_sandbox(root: Path) -> None:
    """Deletes a sandbox, chmod 000 folders included."""
    if not root.exists():
        return
    for folder, dirs, _ in os.walk(root):
        for name in dirs:
            path = Path(folder) / name
            if not path.is_symlink():
                os.chmod(path, 0o755)
    shutil.rmtree(root, ignore_errors=True)


def run_cases(
    cases: Sequence[Case], fixtures: Fixtures, settings: RunSettings, *, workers: int = 3
) -> list[CaseResult]:
    """Runs every case, ``workers`` at a time, the longest first: two-command cases, then torch-importing ones.

    Returns:
        The results in the order of ``cases``.
    """
    order = sorted(range(len(cases)), key=lambda i: (cases[i].setup is None, cases[i].tool == "infer"))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {i: pool.submit(run_case, cases[i], fixtures, settings) for i in order}
        return [futures[i].result() for i in range(len(cases))]


TOTALS = (
    ("cases", lambda r: True),
    ("passed", lambda r: not r.problems()),
    ("one-line errors", lambda r: r.one_line_error),
    ("tracebacks", lambda r: r.traceback),
    ("multi-line stderr (no traceback)", lambda r: not r.traceback and r.stderr_lines > 1),
    ("exit 0 (bad input accepted)", lambda r: r.returncode == 0),
    ("other wrong exit code", lambda r: r.returncode not in (0, 1) and not r.killed and not r.timed_out),
    ("writes outside out/ (not $HOME)", lambda r: bool(r.writes_outside)),
    ("writes into $HOME", lambda r: bool(r.home_writes)),
    ("inputs changed", lambda r: bool(r.changed)),
    ("memory over limit / killed", lambda r: r.memory_problem),
    ("timeouts", lambda r: r.timed_out),
    ("harness build errors", lambda r: bool(r.build_error)),
)


def totals(results: Sequence[CaseResult]) -> dict[str, int]:
    """The table's figures for the bad-input cases (controls are counted apart).

    A case that could not run here (see :class:`~tests.hardening.cases.SkipCase`) counts only
    in "cases" and in a "skipped (REASON)" row, never as passed.
    """
    bad = [r for r in results if not r.expect_ok]
    ran = [r for r in bad if not r.skipped]
    table = {name: sum(1 for r in (bad if name == "cases" else ran) if test(r)) for name, test in TOTALS}
    controls = [r for r in results if r.expect_ok]
    table["controls passed"] = sum(1 for r in controls if not r.skipped and not r.problems())
    table["controls"] = len(controls)
    for result in results:
        if result.skipped:
            row = f"skipped ({result.skipped.split(':')[0]})"
            table[row] = table.get(row, 0) + 1
    return table


def format_totals(table: dict[str, int], title: str = "") -> str:
    width = max(map(len, table))
    lines = [title] if title else []
    return "\n".join(lines + [f"{name:<{width}}  {value:>5}" for name, value in table.items()])


def make_shim(code: Path, work: Path) -> str:
    """A PYTHONPATH folder whose tseg/ namespace links to ``code``'s runtime/, train/ and export/ (and
    benchmarks/ where it has one)."""
    shim = work / "shim" / "tseg"
    shim.mkdir(parents=True, exist_ok=True)
    for stage in ("runtime", "train", "export", "benchmarks"):
        if not (code / stage).is_dir():
            continue
        link, target = shim / stage, (code / stage).resolve()
        if link.is_symlink() and link.resolve() != target:
            link.unlink()  # a --work folder reused for another --code
        if not link.is_symlink():
            link.symlink_to(target, target_is_directory=True)
    return str(shim.parent)


def imported_from(pythonpath: str | None) -> str:
    """Where a child with this PYTHONPATH imports tseg.runtime from (resolved)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    code = "import os, tseg.runtime as r; print(os.path.realpath(r.__file__))"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def build_fixtures(folder: Path) -> Fixtures:
    """The tiny dataset, a 1-epoch run and its export, as tests/conftest.py makes them."""
    from tests.conftest import TINY_MODEL, TINY_SIZE
    from tests.tiny_coco import write_tiny_coco
    from tseg.export.pipeline import export_checkpoint
    from tseg.train.settings import TrainSettings
    from tseg.train.trainer import train

    coco = folder / "coco"
    if not (folder / "runs" / "tiny" / "best.onnx").is_file():
        coco.mkdir(parents=True, exist_ok=True)
        write_tiny_coco(coco)
        settings = TrainSettings(
            data=coco, model=TINY_MODEL, size=TINY_SIZE, epochs=1, batch_size=2, name="tiny",
            runs_dir=folder / "runs", progress=False,
        )  # fmt: skip
        export_checkpoint(train(settings).run_dir / "best.pt")
    run = folder / "runs" / "tiny"
    return Fixtures(model=run / "best.onnx", checkpoint=run / "best.pt", coco=coco)


def main(argv: Sequence[str] | None = None) -> int:
    from tests.hardening.corpus import all_cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="empty folder for sandboxes, logs, fixtures")
    parser.add_argument("--tiny-model", type=Path)
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--coco", type=Path)
    parser.add_argument("--code", type=Path, help="run the CLIs of this checkout instead")
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S)
    parser.add_argument("--failures", action="store_true", help="also print every failing case in full")
    parser.add_argument("--summary", action="store_true", help="also print one line per failing case")
    parser.add_argument("--json", type=Path, help="write every result here")
    options = parser.parse_args(argv)
    options.work = options.work.resolve()  # the cases run in their own folders: no path may be relative
    if options.tiny_model and options.checkpoint and options.coco:
        fixtures = Fixtures(options.tiny_model.resolve(), options.checkpoint.resolve(), options.coco.resolve())
    else:
        fixtures = build_fixtures(options.work / "fixtures")
    pythonpath = make_shim(options.code, options.work) if options.code else None
    print(f"tseg.runtime imported from {imported_from(pythonpath)}")
    cases = [c for c in all_cases() if options.only in c.name]
    settings = RunSettings(work=options.work, timeout_s=options.timeout, pythonpath=pythonpath)
    start = time.monotonic()
    results = run_cases(cases, fixtures, settings, workers=options.workers)
    if options.failures:
        for result in results:
            if result.problems():
                print(result.describe(), end="\n\n")
    if options.summary:
        print("\n".join(r.summary() for r in results if r.problems()))
        print("\n".join(f"{r.name}: skipped: {r.skipped}" for r in results if r.skipped))
    if options.json:
        options.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
    print(format_totals(totals(results), f"{len(results)} cases in {time.monotonic() - start:.0f} s"))
    return 0 if all(not r.problems() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
