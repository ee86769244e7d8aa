"""The wheel carries every package folder of the stages, under tseg.*; the stages import one way."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("runtime", "train", "export", "benchmarks")


def _package_folders() -> set[str]:
    found = set()
    for stage in STAGES:
        for init in (ROOT / stage).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add("tseg/" + rel.as_posix())
    return found


@pytest.mark.slow
def test_wheel_contains_every_package_folder(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("tseg-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    packaged = {n.rsplit("/", 1)[0] for n in names if n.endswith("/__init__.py")}
    expected = _package_folders()
    assert {"tseg/runtime", "tseg/train", "tseg/export", "tseg/train/models"} <= expected
    assert expected <= packaged, f"missing from the wheel: {sorted(expected - packaged)}"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    for script in ("tseg-train", "tseg-export", "tseg-infer", "tseg-plot", "tseg-bench", "tseg-report"):
        assert script in scripts


# What each stage may not import: runtime <- train <- export, with the benchmark tool on top of all.
BANNED = {
    "runtime": ("tseg.train", "tseg.export", "tseg.benchmarks", "torch"),
    "train": ("tseg.export", "tseg.benchmarks"),
    "export": ("tseg.benchmarks",),
    "benchmarks": (),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line number, module) of every import statement in a file, nested ones included."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_stages_import_each_other_in_one_direction_only():
    """Every import of every stage module (top-level or inside a function) follows the direction."""
    for stage, banned in BANNED.items():
        for path in (ROOT / stage).rglob("*.py"):
            for number, module in _imports(path):
                bad = [b for b in banned if module == b or module.startswith(b + ".")]
                assert not bad, f"{path.relative_to(ROOT)}:{number}: imports {module}"


def test_no_stage_loads_another_around_the_import_rules():
    """Modules loaded by name (importlib, PEP 562 lazy attributes) name no banned stage either."""
    import ast

    for stage, banned in BANNED.items():
        for path in (ROOT / stage).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("tseg."):
                    bad = [b for b in banned if node.value == b or node.value.startswith(b + ".")]
                    assert not bad, f"{path.relative_to(ROOT)}:{node.lineno}: names {node.value}"
