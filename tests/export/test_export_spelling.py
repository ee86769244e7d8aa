"""tseg-export CHECKPOINT --onnx, and the older --onnx CHECKPOINT spellings, mean the same export."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from tseg.export.cli import main as export_cli


@pytest.mark.parametrize(
    "args",
    [
        ["runs/v5/best.pt", "--onnx"],
        ["--onnx", "runs/v5/best.pt"],
        ["--onnx=runs/v5/best.pt"],
        ["runs/v5/best.pt"],
        ["-o", "m.onnx", "--onnx", "runs/v5/best.pt", "--opset", "17"],
    ],
)
def test_every_spelling_names_the_same_checkpoint(args):
    context = export_cli.make_context("tseg-export", list(args))
    assert context.params["checkpoint"] == Path("runs/v5/best.pt")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--onnx"], "Missing argument 'CHECKPOINT'"),
        (["--onnx", "a.pt", "b.pt"], "unexpected extra argument (b.pt)"),
        (["--onnx="], "'--onnx' does not take a value"),
    ],
)
def test_a_missing_or_second_checkpoint_is_one_line(args, message):
    result = CliRunner().invoke(export_cli, args)
    assert result.exit_code == 1 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_the_checkpoint_first_spelling_exports(tiny_export):
    """The shared export (tests/conftest.py) is spelt CHECKPOINT --onnx."""
    assert tiny_export.fp32.is_file() and "PASS" in tiny_export.output
