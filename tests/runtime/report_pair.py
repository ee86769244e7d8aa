"""Two real reports of the tiny split for tseg-report's tests: A without the CRF, B with it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from tests.onnx_models import write_colour_model
from tseg.runtime.infer.cli import main as infer_cli


@dataclass(frozen=True)
class ReportPair:
    """Report folders A (the model alone) and B (with the CRF), each picturing its worst and best image."""

    a: Path
    b: Path
    val: Path

    def copy(self, folder: Path) -> ReportPair:
        """Copies of A and B (with their label PNGs, so the links stay good) under ``folder``, to change."""
        shutil.copytree(self.a.parent, folder, symlinks=True)
        return ReportPair(folder / self.a.name, folder / self.b.name, self.val)


def make_report_pair(root: Path, val: Path) -> ReportPair:
    """Runs tseg-infer --eval --report twice on ``val`` under ``root``: A/ and B/ (labels in pred-A/, pred-B/)."""
    model = write_colour_model(root / "model" / "colour.onnx")
    for name, extra in (("A", []), ("B", ["--crf"])):
        args = ["--coco", val, "--model", model, "--out", root / f"pred-{name}", "--eval", "--report", root / name,
                "--report-images", "1", "-q", *extra]
        result = CliRunner().invoke(infer_cli, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    (root / "model").rename(root.parent / f"{root.name}-model")  # the reports' folder holds reports and labels only
    return ReportPair(root / "A", root / "B", val)
