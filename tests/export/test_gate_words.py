"""A precision's gate reasons name the Python parameter (max_miou_drop=0.01), in the verdict and the
parity report; tseg-export shows them with its flag (--max-miou-drop 0.01)."""

from __future__ import annotations

from tseg.export.accuracy import PrecisionVerdict, SplitScores, summary
from tseg.export.cli import main as export_cli
from tseg.export.parity import ParityCase
from tseg.export.precisions import failure_line
from tseg.runtime.cli_errors import cli_message


def test_a_drop_over_the_limit_names_max_miou_drop_and_tseg_export_its_flag():
    cases = (ParityCase(name="a.jpg", height=8, width=8, max_abs_diff=1e-3, argmax_agreement=0.99),)
    split = SplitScores(miou=0.70, agreement=0.99, max_abs_diff=0.1)
    int8 = PrecisionVerdict("int8", "m.int8.onnx", cases, 0.95, split=split, torch_miou=0.72, max_miou_drop=0.01)
    reason = "val mIoU 0.7000 vs PyTorch 0.7200: drop 0.0200 > max_miou_drop=0.01"
    assert int8.failures() == [reason] and int8.to_dict()["failures"] == [reason]
    table, line = summary([int8]), failure_line([int8])
    assert "FAIL: " + reason in table and reason in line and "--" not in table + line
    shown = "drop 0.0200 > --max-miou-drop 0.01"
    assert shown in cli_message(table, command=export_cli) and shown in cli_message(line, command=export_cli)
    assert cli_message(table, command=export_cli).splitlines()[0] == table.splitlines()[0]  # the header as it was
