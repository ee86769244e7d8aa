"""Shared fixtures: a tiny hand-written dataset, and one tiny trained + exported model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tiny_coco import write_tiny_coco

TINY_MODEL = "deeplabv3_mobilenet_v3_large"
TINY_SIZE = 32


@pytest.fixture(scope="session")
def tiny_coco_dir(tmp_path_factory) -> Path:
    """Root of the hand-written dataset (read-only for tests: copy before changing)."""
    root = tmp_path_factory.mktemp("tiny_coco")
    write_tiny_coco(root)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_coco_dir, tmp_path_factory):
    """One tiny training run on the hand-written dataset (1 epoch, 32 px)."""
    from tseg.train.settings import TrainSettings
    from tseg.train.trainer import train

    runs = tmp_path_factory.mktemp("runs")
    settings = TrainSettings(
        data=tiny_coco_dir,
        model=TINY_MODEL,
        size=TINY_SIZE,
        epochs=1,
        batch_size=2,
        name="tiny",
        runs_dir=runs,
        progress=False,
    )
    return train(settings)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_run) -> Path:
    """The tiny run's best.pt exported to ONNX (parity checked)."""
    from tseg.export.pipeline import export_checkpoint

    result = export_checkpoint(tiny_run.run_dir / "best.pt")
    assert result.report.passed, result.report.summary()
    return result.onnx_path
