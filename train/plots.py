"""The notes' charts: LR schedule, train/val loss, train/val mIoU, several runs per chart."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write
from tseg.runtime.inputs import read_input
from tseg.runtime.paths import Input, Inputs, Output, check_outputs, describe

MAX_CSV_BYTES = 64 * 2**20  # a million LR steps take ~25 MiB
CHARTS = {
    "lr.png": ("learning rate", [("lr", "-")]),
    "loss.png": ("loss", [("train_loss", "-"), ("val_loss", "--")]),
    "miou.png": ("mIoU", [("train_miou", "-"), ("val_miou", "--")]),
}


def read_csv_columns(path: Path, *, required: Sequence[str] = ()) -> dict[str, list[float]]:
    """A numeric CSV as column name -> values (empty cells become NaN).

    Args:
        path: the CSV file (a header row, then one row per record).
        required: columns that must be present.

    Raises:
        TsegError: unreadable, empty, no data rows, a missing column, a ragged row
            or a cell that is not a number, naming the file (and the row).
    """
    data = read_input(path, what="run CSV", limit=MAX_CSV_BYTES)
    try:
        rows = list(csv.reader(io.StringIO(data.decode("utf-8"), newline=""), strict=True))
    except (UnicodeDecodeError, csv.Error) as err:
        raise TsegError(f"{path} is not a readable CSV file ({err})") from None
    if not rows or not rows[0]:
        raise TsegError(f"{path} is empty: need a header row and one row per epoch")
    header = rows[0]
    if len(set(header)) != len(header) or not all(header):
        raise TsegError(f"{path} has a malformed header (empty or repeated column names): {header}")
    missing = [c for c in required if c not in header]
    if missing:
        raise TsegError(f"{path} has no {', '.join(missing)} column (columns: {', '.join(header)})")
    if len(rows) < 2:
        raise TsegError(f"{path} has a header but no rows")
    columns: dict[str, list[float]] = {key: [] for key in header}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise TsegError(f"{path}, line {number}: {len(row)} cells, the header has {len(header)}")
        for key, cell in zip(header, row, strict=True):
            try:
                columns[key].append(float(cell) if cell != "" else float("nan"))
            except ValueError:
                raise TsegError(f"{path}, line {number}: {key} is {cell[:40]!r}, not a number") from None
    return columns


def _check_run(run_dir: Path) -> Path:
    """The run's metrics.csv; refuses a path that is not a run folder."""
    if not run_dir.is_dir():
        raise TsegError(f"{run_dir} is not a run folder (need a folder written by tseg-train)")
    metrics_path = run_dir / "metrics.csv"
    if not metrics_path.is_file():
        raise TsegError(f"{run_dir} is not a tseg run: no metrics.csv")
    return metrics_path


def _run_series(run_dir: Path) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """(per-epoch metrics, per-step LR) of a run folder."""
    metrics_path = _check_run(run_dir)
    steps_path = run_dir / "lr.csv"
    epochs = read_csv_columns(metrics_path, required=("epoch",))
    steps = read_csv_columns(steps_path, required=("step", "lr")) if steps_path.is_file() else {}
    return epochs, steps


def check_plot_out(out: Path, runs: Sequence[Path]) -> None:
    """Refuses, for tseg-plot, an ``out`` that is or lies in one of the run folders it reads, or a chart place taken.

    (tseg-train writes a run's own charts into RUN/plots through :func:`plot_runs` directly.)
    """
    for run in runs:
        _check_run(Path(run))  # what the runs are comes first: the clearer error
    inputs = Inputs(Input("runs", Path(run), folder=True) for run in runs)
    check_outputs([Output("out", out, folder=True)], inputs)
    for file_name in CHARTS:
        inputs.check_target(out / file_name, what="the chart")
        kind = describe(out / file_name)
        if kind not in (None, "a file"):
            raise TsegError(
                f"out: {out / file_name} exists and is {kind}, not a chart tseg wrote: choose another folder",
                parameter="out",
            )


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
    if len(names) != len(runs):
        raise TsegError(f"need one label per run ({len(runs)}), got {len(names)}")
    series = [_run_series(r) for r in runs]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for file_name, (ylabel, columns) in CHARTS.items():
        fig, ax = plt.subplots(figsize=(7, 4.2))
        try:
            _draw_chart(ax, file_name, columns, names, series)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=8)
            fig.tight_layout()
            atomic_write(out / file_name, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110, format="png"))
        finally:
            plt.close(fig)
        written.append(out / file_name)
    return written


MARKERS_UP_TO = 40  # points per line drawn with markers: a one-epoch run's single point shows as a dot


def _markers(points: int) -> dict:
    """Markers for short lines (a line of one point draws nothing without them)."""
    return {"marker": "o", "markersize": 4} if points <= MARKERS_UP_TO else {}


def _draw_chart(ax, file_name: str, columns, names: list[str], series) -> None:
    """One chart's lines: per-step LR when a run has lr.csv, else its per-epoch columns."""
    for index, (name, (epochs, steps)) in enumerate(zip(names, series, strict=True)):
        colour = f"C{index % 10}"
        if file_name == "lr.png" and steps:
            ax.plot(steps["step"], steps["lr"], color=colour, label=name, **_markers(len(steps["step"])))
            ax.set_xlabel("step")
            continue
        for column, style in columns:
            if column in epochs:
                ax.plot(epochs["epoch"], epochs[column], style, color=colour, label=f"{name} {column}",
                        **_markers(len(epochs["epoch"])))
        ax.set_xlabel("epoch" if file_name != "lr.png" or not steps else "step")
