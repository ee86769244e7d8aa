"""tseg-plot on malformed runs: one line naming the file, never a traceback or a chart of nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from tseg.train.cli import plot_main

GOOD = "epoch,lr,train_loss,val_loss,train_miou,val_miou\n1,0.1,1.0,1.1,0.2,0.3\n2,0.1,0.8,0.9,0.3,0.4\n"


@pytest.mark.parametrize(
    ("metrics", "lr", "message"),
    [
        (b"", None, "metrics.csv is empty"),
        (b"\n\n", None, "metrics.csv is empty"),
        (b"epoch,val_miou\n", None, "metrics.csv has a header but no rows"),
        (b"epoch,val_miou\n1,abc\n", None, "metrics.csv, line 2: val_miou is 'abc', not a number"),
        (b"epoch,val_miou\n1,0.5,7\n", None, "metrics.csv, line 2: 3 cells, the header has 2"),
        (b"epoch,val_miou\n1\n", None, "metrics.csv, line 2: 1 cells, the header has 2"),
        (b"val_miou,train_loss\n0.5,1\n", None, "metrics.csv has no epoch column"),
        (b"epoch,epoch\n1,2\n", None, "malformed header"),
        (b"epoch,val_miou\n1,\xff\xfe\n", None, "metrics.csv is not a readable CSV file"),
        (b'epoch,val_miou\n1,"0.5\n', None, "metrics.csv is not a readable CSV file"),
        (GOOD.encode(), b"step\n1\n", "lr.csv has no lr column"),
        (GOOD.encode(), b"step,lr\n0,fast\n", "lr.csv, line 2: lr is 'fast', not a number"),
    ],
)
def test_malformed_csv_is_one_line_naming_the_file(tmp_path, metrics, lr, message):
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_bytes(metrics)
    if lr is not None:
        (run / "lr.csv").write_bytes(lr)
    out = tmp_path / "plots"
    result = CliRunner().invoke(plot_main, [str(run), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert str(run) in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output and not out.exists(), "nothing drawn"


def test_a_file_a_missing_folder_or_a_folder_without_metrics_is_not_a_run(tmp_path):
    (tmp_path / "metrics.csv").write_text(GOOD)
    (tmp_path / "empty").mkdir()
    for target, message in [
        (tmp_path / "metrics.csv", "is not a run folder"),
        (tmp_path / "missing", "is not a run folder"),
        (tmp_path / "empty", "is not a tseg run: no metrics.csv"),
    ]:
        result = CliRunner().invoke(plot_main, [str(target), "-o", str(tmp_path / "plots")])
        assert result.exit_code == 1 and message in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr


def test_nan_cells_plot_and_charts_get_ordinary_permissions(tmp_path):
    import os

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text(GOOD + "3,0.1,,0.9,nan,inf\n")
    old = os.umask(0o027)
    try:
        result = CliRunner().invoke(plot_main, [str(run), "-o", str(tmp_path / "plots")])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert result.stderr == "", "no warnings (e.g. an empty legend) on stderr"
    for name in ("lr.png", "loss.png", "miou.png"):
        assert (tmp_path / "plots" / name).stat().st_mode & 0o777 == 0o640, name
    assert not list((tmp_path / "plots").glob(".*")), "no temp files left"


def test_a_one_epoch_run_draws_a_point():
    """A line of one point draws nothing without a marker: a one-epoch run's charts must show it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tseg.train.plots import CHARTS, _draw_chart

    epochs = {"epoch": [1.0], "train_loss": [0.5], "val_loss": [0.6], "val_miou": [0.4], "lr": [0.01]}
    for file_name, (_, columns) in CHARTS.items():
        fig, ax = plt.subplots()
        try:
            _draw_chart(ax, file_name, columns, ["one"], [(epochs, {})])
            lines = ax.get_lines()
            assert lines and all(line.get_marker() not in (None, "None", "") for line in lines), file_name
        finally:
            plt.close(fig)
