"""Shared fixtures: a tiny hand-written dataset, and one tiny trained model exported once in every precision."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.tiny_coco import write_tiny_coco

TINY_MODEL = "deeplabv3_mobilenet_v3_large"
TINY_SIZE = 32


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """tseg's cache folder ($XDG_CACHE_HOME/tseg) in the session's temp folder, for the test processes
    and the commands they start: device="auto" runs OpenVINO where it is installed, and its compiled
    models must not land in the user's ~/.cache (a test that wants another folder sets its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
        yield


@pytest.fixture(autouse=True)
def fresh_temp_file_sweeps():
    """Each test starts as a new process would, with no folder swept yet: tseg.runtime.files knows a
    swept folder by its inode, which the next test's tmp_path may reuse once a passed test's is deleted."""
    import tseg.runtime.files as files

    files._swept.clear()


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


@dataclass(frozen=True)
class TinyExport:
    """The tiny run exported once in every precision (read-only for tests: copy before changing).

    ``fp32``, ``fp16``, ``int8``: the three files; ``parity``: their report; ``triton``: a Triton
    repository (CPU instances, batch up to 4) holding each; ``stdout`` and ``output`` (stdout and
    stderr): what tseg-export printed; ``stale``: temp files of a killed export planted beside the output
    before the run (``kept`` another output's, which the export must leave).
    """

    fp32: Path
    fp16: Path
    int8: Path
    parity: Path
    triton: Path
    stdout: str
    output: str
    stale: tuple[Path, ...]
    kept: Path

    @property
    def files(self) -> dict[str, Path]:
        return {"fp32": self.fp32, "fp16": self.fp16, "int8": self.int8}


@pytest.fixture(scope="session")
def tiny_export(tiny_run, tiny_coco_dir, tmp_path_factory) -> TinyExport:
    """tseg-export of the tiny run in FP32, FP16 and INT8 (calibrated on 4 training images), with parity
    on the dataset's images and a Triton repository: the one export the export, precision, quantize,
    Triton and benchmark tests share.

    It runs as a user's would on a shared machine: under umask 027, beside stale temp files of an earlier
    killed export (of this output, and of another one). It is spelt as the docs spell it: CHECKPOINT --onnx.
    """
    import os

    from click.testing import CliRunner

    from tseg.export.cli import main as export_cli

    folder = tmp_path_factory.mktemp("export")
    out = folder / "best.onnx"
    stale = (folder / ".best.onnx.x1y2.tseg-tmp", folder / ".best.parity.json.z3.tseg-tmp")
    kept = folder / ".other.onnx.q9.tseg-tmp"  # another export's, maybe still running
    for path in (*stale, kept):
        path.write_bytes(b"partial")
    args = [
        str(tiny_run.run_dir / "best.pt"), "--onnx", "-o", str(out), "--data", str(tiny_coco_dir),
        "--precision", "fp32,fp16,int8", "--calib-images", "4",
        "--triton", str(folder / "repo"), "--triton-max-batch", "4", "--triton-device", "cpu",
        # A 1-epoch 32-px model has near-ties everywhere: loose low-precision gates (FP32 keeps its strict one).
        "--min-agreement", "fp16=0.9,int8=0", "--max-miou-drop", "1",
    ]  # fmt: skip
    old_umask = os.umask(0o027)
    try:
        result = CliRunner().invoke(export_cli, args)
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    return TinyExport(
        fp32=out,
        fp16=out.with_suffix(".fp16.onnx"),
        int8=out.with_suffix(".int8.onnx"),
        parity=out.with_suffix(".parity.json"),
        triton=folder / "repo",
        stdout=result.stdout,
        output=result.output,
        stale=stale,
        kept=kept,
    )


@pytest.fixture(scope="session")
def tiny_onnx(tiny_export) -> Path:
    """The tiny run's FP32 ONNX file (parity checked): :func:`tiny_export`'s, read-only."""
    return tiny_export.fp32
