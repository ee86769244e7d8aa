"""train() prints nothing: its lines go to ``report`` (tseg-train passes click.echo), else the ``tseg`` logger."""

from __future__ import annotations

import logging
from dataclasses import replace

from tests.conftest import TINY_MODEL, TINY_SIZE
from tseg.runtime.errors import logger
from tseg.train.settings import TrainSettings
from tseg.train.trainer import train


def test_train_reports_its_lines_and_prints_nothing(tiny_coco_dir, tmp_path, capsys, caplog, monkeypatch):
    monkeypatch.setattr(logger, "handlers", [])  # a CLI run earlier in this process may have added its stderr one
    settings = TrainSettings(data=tiny_coco_dir, model=TINY_MODEL, size=TINY_SIZE, epochs=1, batch_size=2,
                             name="quiet", runs_dir=tmp_path, progress=False)
    lines = []
    run = train(settings, report=lines.append)
    assert capsys.readouterr() == ("", "")
    assert lines[0].startswith(f"run {run.run_dir}: {TINY_MODEL}, ") and "1 process(es)" in lines[0]
    assert lines[1].startswith("epoch 1/1  train loss ")
    assert lines[2].startswith("best val mIoU ") and lines[3].startswith("last epoch: ") and len(lines) == 4
    with caplog.at_level(logging.INFO, logger="tseg"):  # no report: INFO records of the tseg logger
        train(replace(settings, name="logged"))
    assert capsys.readouterr() == ("", "")
    words = [r.getMessage().split(" ")[0] for r in caplog.records if r.name == "tseg"]
    assert words == ["run", "epoch", "best", "last"]
