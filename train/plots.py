"""The notes' charts: LR schedule, train/val loss, train/val mIoU, several runs per chart."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from tseg.runtime.errors import TsegError

CHARTS = {
    "lr.png": ("learning rate", [("lr", "-")]),
    "loss.png": ("loss", [("train_loss", "-"), ("val_loss", "--")]),
    "miou.png": ("mIoU", [("train_miou", "-"), ("val_miou", "--")]),
}


def read_csv_columns(path: Path) -> dict[str, list[float]]:
    """A numeric CSV as column name -> values (empty cells become NaN)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {
        key: [float(row[key]) if row[key] not in ("", None) else float("nan") for row in rows]
        for key in rows[0]
    }


def _run_series(run_dir: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(per-epoch metrics, per-step LR) of a run folder."""
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.is_file():
        raise TsegError(f"{run_dir} is not a tseg run: no metrics.csv")
    steps_path = run_dir / "lr.csv"
    return read_csv_columns(metrics_path), (read_csv_columns(steps_path) if steps_path.is_file() else {})


def plot_runs(
    run_dirs: Sequence[str | Path], *, out: str | Path, labels: Sequence[str] | None = None
) -> list[Path]:
    """Draws lr.png, loss.png and miou.png with one line style per series and one colour per run.

    Args:
        run_dirs: run folders written by tseg-train.
        out: folder for the PNGs (created).
        labels: legend names; default: the run folder names.

    Returns:
        The PNG paths written.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    runs = [Path(r) for r in run_dirs]
    names = list(labels) if labels else [r.name for r in runs]
    series = [_run_series(r) for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, (ylabel, columns) in CHARTS.items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        for index, (name, (epochs, steps)) in enumerate(zip(names, series, strict=True)):
            colour = f"C{index % 10}"
            if file_name == "lr.png" and steps:
                ax.plot(steps["step"], steps["lr"], color=colour, label=name)
                ax.set_xlabel("step")
                continue
            for column, style in columns:
                if column in epochs:
                    ax.plot(epochs["epoch"], epochs[column], style, color=colour, label=f"{name} {column}")
            ax.set_xlabel("epoch" if file_name != "lr.png" or not steps else "step")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / file_name, dpi=110)
        plt.close(fig)
        written.append(out / file_name)
    return written
