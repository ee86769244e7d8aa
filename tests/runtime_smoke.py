"""Prepares what `make test` runs in a torch-free venv: a tiny dataset and ONNX model.

Usage: python -m tests.runtime_smoke OUT_DIR   (needs the train and export extras)
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.tiny_coco import write_tiny_coco


def prepare(out: Path) -> Path:
    """Writes OUT/data (hand-written COCO) and OUT/tiny.onnx; returns the model path."""
    from tseg.export.pipeline import export_checkpoint
    from tseg.train.settings import TrainSettings
    from tseg.train.trainer import train

    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    write_tiny_coco(data)
    run = train(
        TrainSettings(
            data=data, size=32, epochs=1, batch_size=2, name="tiny", runs_dir=out / "runs", progress=False
        )
    )
    result = export_checkpoint(run.run_dir / "best.pt", out=out / "tiny.onnx")
    if not result.report.passed:
        raise SystemExit(result.report.summary())
    return result.onnx_path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(prepare(Path(sys.argv[1])))
