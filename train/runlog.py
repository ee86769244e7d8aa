"""What a run leaves in its folder: metrics.csv, lr.csv, settings.json, TensorBoard."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from tseg.runtime.data.metrics import SegmentationScores
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes


def _write_csv(path: Path, rows: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_bytes(path, buffer.getvalue().encode())


def _read_csv(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


class RunLog:
    """Per-epoch metrics and per-step learning rates of one run (rank 0 only).

    Files are rewritten atomically after every epoch's checkpoint, so a crash never
    leaves a torn CSV; the rows also travel in last.pt, so a resumed run continues
    them exactly even if the crash came between checkpoint and CSV.

    Args:
        run_dir: the run folder.
        classes: class names, for the per-class IoU columns.
        tensorboard: also write TensorBoard events to run_dir/tensorboard.
    """

    def __init__(self, run_dir: Path, classes: tuple[str, ...], *, tensorboard: bool = False) -> None:
        self.run_dir, self.classes = run_dir, classes
        self.epochs: list[dict] = []
        self.steps: list[dict] = []
        self._writer = _tensorboard_writer(run_dir) if tensorboard else None

    def state(self) -> dict:
        """The rows so far, saved inside last.pt so a resume never depends on the CSVs."""
        return {"epochs": list(self.epochs), "steps": [[r["step"], r["lr"]] for r in self.steps]}

    def restore(self, state: dict) -> None:
        """Continues from :meth:`state` of the checkpoint being resumed."""
        self.epochs = [dict(row) for row in state["epochs"]]
        self.steps = [{"step": int(step), "lr": float(lr)} for step, lr in state["steps"]]

    def log_step(self, step: int, lr: float) -> None:
        self.steps.append({"step": step, "lr": lr})
        if self._writer:
            self._writer.add_scalar("lr", lr, step)

    def log_epoch(self, metrics: dict[str, float], val: SegmentationScores) -> None:
        """Adds one epoch's row: metrics plus per-class val IoU (call :meth:`flush` to write)."""
        row = dict(metrics, **{f"iou/{c}": v for c, v in zip(self.classes, val.iou, strict=True)})
        self.epochs.append(row)

    def flush(self) -> None:
        """Rewrites metrics.csv and lr.csv (atomically) and flushes TensorBoard."""
        row = self.epochs[-1]
        _write_csv(self.run_dir / "metrics.csv", self.epochs)
        if self.steps:
            _write_csv(self.run_dir / "lr.csv", self.steps)
        if self._writer:
            for key, value in row.items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, row["epoch"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer:
            self._writer.close()


def _tensorboard_writer(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise TsegError("tensorboard=True needs the tensorboard package: pip install tensorboard") from None
    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def save_settings(run_dir: Path, resolved: dict) -> None:
    """settings.json: the resolved settings (paths, versions) of the run."""
    atomic_write_bytes(run_dir / "settings.json", json.dumps(resolved, indent=2).encode())
