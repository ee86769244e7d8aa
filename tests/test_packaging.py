"""The wheel carries every package folder of the three stages, under tseg.*."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("runtime", "train", "export")


def _package_folders() -> set[str]:
    found = set()
    for stage in STAGES:
        for init in (ROOT / stage).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add("tseg/" + rel.as_posix())
    return found


@pytest.mark.slow
def test_wheel_contains_every_package_folder(tmp_path):
    pytest.importorskip("build")
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
    for script in ("tseg-train", "tseg-export", "tseg-infer"):
        assert script in scripts


def test_stages_import_each_other_in_one_direction_only():
    """runtime imports no other stage and never torch; train never imports export."""
    rules = {
        "runtime": ("tseg.train", "tseg.export", "import torch", "from torch"),
        "train": ("tseg.export",),
    }
    for stage, banned in rules.items():
        for path in (ROOT / stage).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                if stripped.startswith(("import ", "from ")):
                    assert not any(
                        stripped.startswith(b) or f" {b}" in stripped for b in banned if b.startswith("tseg")
                    ) and not any(stripped.startswith(b) for b in banned), (
                        f"{path.relative_to(ROOT)}:{number}: {stripped}"
                    )
