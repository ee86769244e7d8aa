"""Issues 9, 12, 17 and 22's acceptance harness: every bad input gives exit 1, one line, no traceback, no lost file.

All selected cases run once, concurrently, each in its own subprocess and sandbox (module
fixture); then one test per case asserts that case's result (a case this machine cannot
run, e.g. without mount namespaces, is skipped with the reason). ``python -m
tests.hardening.runner`` runs the same corpus and prints the totals.

`make test` runs a sample spread over every class (:func:`quick_sample`, every control
included); the rest are marked ``slow``, so `make test-all` (CI) runs the whole corpus.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import pytest

from tests.hardening.cases import Fixtures
from tests.hardening.corpus import all_cases
from tests.hardening.runner import RunSettings, make_shim, run_cases

CASES = all_cases()
ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
SAMPLE_SHARE = 6  # make test runs about one case in this many of each class (at least SAMPLE_MIN)
SAMPLE_MIN = 3


def quick_sample(cases) -> set[str]:
    """The names `make test` runs: of each class, cases spread evenly over its list, and every control."""
    by_class = defaultdict(list)
    for case in cases:
        by_class[case.name.split("/")[0]].append(case)
    chosen = {case.name for case in cases if case.expect_ok}
    for members in by_class.values():
        count = min(len(members), max(SAMPLE_MIN, len(members) // SAMPLE_SHARE))
        chosen |= {members[round(i * (len(members) - 1) / max(count - 1, 1))].name for i in range(count)}
    return chosen


QUICK = quick_sample(CASES)


@pytest.fixture(scope="module")
def hardening_results(request, tiny_onnx, tiny_run, tiny_coco_dir, tmp_path_factory):
    """name -> CaseResult for the cases this session selected (all of them under `make test`)."""
    selected = {
        item.callspec.params["case"].name
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec") and "case" in item.callspec.params
    }
    fixtures = Fixtures(model=tiny_onnx, checkpoint=tiny_run.run_dir / "best.pt", coco=tiny_coco_dir)
    work = tmp_path_factory.mktemp("hardening")
    # The CLIs run this checkout's code (as --code does), whichever tseg the venv installed.
    settings = RunSettings(work=work, pythonpath=make_shim(ROOT, work))
    results = run_cases([c for c in CASES if c.name in selected], fixtures, settings, workers=WORKERS)
    return {result.name: result for result in results}


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, id=case.name, marks=() if case.name in QUICK else pytest.mark.slow) for case in CASES],
)
def test_case(case, hardening_results):
    result = hardening_results[case.name]
    if result.skipped:
        pytest.skip(result.skipped)
    assert not result.problems(), result.describe()


def test_corpus_covers_every_class_of_the_issue():
    bad = [case for case in CASES if not case.expect_ok]
    per_class = Counter(case.name.split("/")[0] for case in bad)
    assert len(bad) >= 100
    groups = ("overwrite", "export", "coco", "json", "model", "ckpt", "train", "plot", "image", "settings", "bench",
              "report")
    for group in groups:
        assert per_class[group] >= 5, f"only {per_class[group]} {group} cases"
    assert {case.tool for case in bad} == {"infer", "train", "export", "plot", "bench", "report"}
    assert sum(case.expect_ok for case in CASES) >= 3
    # Issue 17: generated variants of each class (output identity, special inputs), and the rest.
    assert per_class["paths"] >= 100 and per_class["special"] >= 30
    for group in ("collide", "noise"):
        assert per_class[group] >= 3, f"only {per_class[group]} {group} cases"
    controls = Counter(case.name.split("/")[0] for case in CASES if case.expect_ok)
    assert controls["tempfiles"] >= 5 and controls["good"] >= 3 and controls["noise"] >= 1 and controls["records"] >= 1


def test_identity_matrix_covers_every_output_option_and_relation():
    from tests.hardening.corpus_paths import COMMANDS, RELATIONS, SPECIALS

    names = {case.name for case in CASES}
    for command in COMMANDS:
        for output in command.outputs:
            prefix = f"paths/{command.slug}-{output.slug}-"
            made = [name for name in names if name.startswith(prefix)]
            assert made, f"no case for {command.slug} {output.option}"
            if command.slug != "coco" or output.option == "--submission":  # --out/--overlay: with photos
                assert all(any(name == prefix + kind for name in made) for kind in SPECIALS), prefix
    for relation in RELATIONS:
        assert any(f"-{relation}-" in name for name in names), relation


def test_the_quick_sample_reaches_every_class_and_every_control():
    classes = {case.name.split("/")[0] for case in CASES}
    assert {name.split("/")[0] for name in QUICK} == classes
    assert {case.name for case in CASES if case.expect_ok} <= QUICK
    assert len(QUICK) < len(CASES) / 3  # the rest run under make test-all
