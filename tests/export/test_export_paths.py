"""tseg-export never replaces its input and refuses bad paths and settings before any work."""

from __future__ import annotations

import hashlib
import os
import shutil

import pytest
from click.testing import CliRunner

from tseg.export.cli import main as export_cli
from tseg.export.onnx import MIN_OPSET, max_opset


@pytest.fixture()
def workdir(tiny_run, tmp_path, monkeypatch):
    """tmp_path as the working folder, holding a copy of the tiny checkpoint as ck.pt."""
    shutil.copy(tiny_run.run_dir / "best.pt", tmp_path / "ck.pt")
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _tree(folder):
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _refused(args, message, folder):
    before = _tree(folder)
    result = CliRunner().invoke(export_cli, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert _tree(folder) == before, "nothing written, nothing changed"


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["--onnx", "ck.pt", "-o", "ck.pt"], "--out must be a path ending in .onnx, got 'ck.pt'"),
        (None, ["--onnx", "ck.pt", "-o", "out.bin"], "--out must be a path ending in .onnx"),
        (None, ["--onnx", "ck.pt", "-o", "out"], "--out must be a path ending in .onnx"),
        ("ck.onnx", ["--onnx", "ck.onnx"], "ends in .onnx, so the default output would replace it"),
        ("ck.onnx", ["--onnx", "ck.onnx", "-o", "ck.onnx"], "--out ck.onnx is the input ck.onnx (CHECKPOINT)"),
        ("ck.onnx", ["--onnx", "ck.onnx", "-o", "./runs/../ck.onnx"], "is the input ck.onnx (CHECKPOINT)"),
        ("ck.onnx", ["--onnx", "./ck.onnx", "-o", "{abs}/ck.onnx"], "is the input ck.onnx (CHECKPOINT)"),
        ("link", ["--onnx", "ck.pt", "-o", "link.onnx"], "--out link.onnx is a symbolic link"),
        ("hardlink", ["--onnx", "ck.pt", "-o", "hard.onnx"], "--out hard.onnx is the input ck.pt (CHECKPOINT)"),
        ("parity", ["--onnx", "m.parity.json", "-o", "m.onnx"], "parity.json is the input m.parity.json"),
        ("dir.onnx", ["--onnx", "ck.pt", "-o", "dir.onnx"], "--out dir.onnx is a folder"),
        ("dir.parity.json", ["--onnx", "ck.pt", "-o", "dir.onnx"], "the parity report dir.parity.json is a folder"),
        (None, ["--onnx", "missing.pt"], "checkpoint not found: missing.pt"),
        (None, ["--onnx", "ck.pt", "--data", "nowhere"], "data folder not found: nowhere"),
        (None, ["--onnx", "ck.pt", "--data", "runs"], "--data runs has no validation split val.json"),
        (None, ["--onnx", "ck.pt", "--opset", "17"], f"--opset must be an integer from {MIN_OPSET} "),
        (None, ["--onnx", "ck.pt", "--opset", "999"], "--opset must be"),
        (None, ["--onnx", "ck.pt", "--opset", "-1"], "--opset must be"),
    ],
)
def test_export_refuses_before_any_work(workdir, setup, args, message):
    args = [a.replace("{abs}", str(workdir)) for a in args]  # an absolute spelling of the same file
    if setup == "ck.onnx":
        shutil.copy("ck.pt", "ck.onnx")
    elif setup == "link":
        os.symlink("ck.pt", "link.onnx")
    elif setup == "hardlink":
        os.link("ck.pt", "hard.onnx")
    elif setup == "parity":
        shutil.copy("ck.pt", "m.parity.json")
    elif setup in ("dir.onnx", "dir.parity.json"):
        os.mkdir(setup)
    _refused(args, message, workdir)


def test_an_opset_onnx_knows_but_onnx_runtime_does_not_is_refused(workdir):
    import onnx

    if max_opset() >= onnx.defs.onnx_opset_version():
        pytest.skip("ONNX Runtime here runs every opset onnx knows")
    newer = str(max_opset() + 1)
    message = f"--opset {newer} is newer than the installed ONNX Runtime"
    _refused(["--onnx", "ck.pt", "--opset", newer], message, workdir)


def test_opset_range_is_what_onnx_runtime_loads():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    high = max_opset()
    assert high >= MIN_OPSET

    def loads(opset):
        value = helper.make_tensor_value_info
        graph = helper.make_graph(
            [helper.make_node("Neg", ["x"], ["y"])],
            "g",
            [value("x", TensorProto.FLOAT, [1])],
            [value("y", TensorProto.FLOAT, [1])],
        )
        ops = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=ops, ir_version=helper.find_min_ir_version_for(ops))
        options = ort.SessionOptions()
        options.log_severity_level = 4
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    assert loads(high)
    import onnx

    assert high == onnx.defs.onnx_opset_version() or not loads(high + 1)


def test_parity_report_with_non_finite_logits_is_strict_json_and_fails():
    import json
    import math

    from tseg.export.parity import ParityCase, ParityReport

    cases = (ParityCase("a", 8, 8, math.inf, 0.2), ParityCase("b", 8, 8, 1e-6, 1.0))
    report = ParityReport(cases, ("CPUExecutionProvider",), 0.999)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert not data["passed"] and data["max_abs_diff"] is None
    assert [c["max_abs_diff"] for c in data["cases"]] == [None, 1e-6]
