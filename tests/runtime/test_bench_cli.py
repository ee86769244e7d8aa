"""tseg-bench end to end on hand-built models (fast): rows, figures, outputs, one-line refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")

from tests.onnx_models import INPUT_SIZE, write_colour_model  # noqa: E402
from tests.tiny_coco import write_tiny_coco  # noqa: E402
from tseg.runtime.bench.cli import main  # noqa: E402

FAST = ["--min-time", "0", "--min-runs", "2", "--warmup", "1", "--pause", "0", "--no-progress"]


def bench(*args: str):
    return CliRunner().invoke(main, [*map(str, args), *FAST])


def one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    for fragment in fragments:
        assert fragment in lines[0]


def test_rows_figures_and_reports(colour_onnx, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "new" / "folder" / "bench.md"  # folders made
    result = bench(colour_onnx, "--sizes", "16,32", "--batch-sizes", "1,2", "--threads", "1",
                   "--json", out_json, "--markdown", out_md)
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    rows = data["rows"]
    assert [(r["size"], r["batch"]) for r in rows] == [([16, 16], 1), ([16, 16], 2), ([32, 32], 1), ([32, 32], 2)]
    peak = data["peaks_gflops_per_s"]["fp32 GEMM on cpu"]
    assert peak > 0
    # The peak is the fastest of the GEMMs timed for it (two square shapes and a convolution's im2col shape).
    gemms = data["peak_gemms"]["fp32 GEMM on cpu"]
    shapes = ["1024x1024x1024", "2048x2048x2048", "4096x1152x256"]
    assert [g.split(":")[0] for g in gemms] == [f"MatMul {shape}" for shape in shapes]
    assert round(peak) == max(int(g.split(": ")[1]) for g in gemms)
    for row in rows:
        assert row["status"] == "ran" and row["precision"] == "fp32" and row["device"] == "cpu"
        assert row["runs"] >= 2 and row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        side = row["size"][0]
        assert row["gflops"] == pytest.approx(2 * 4 * side * side * 3 / 1e9)  # a 1x1 conv, 3 -> 4 channels
        assert row["gflops_per_s"] == pytest.approx(row["gflops"] * row["batch"] / (row["p50_ms"] / 1e3))
        assert row["peak_fraction"] == pytest.approx(row["gflops_per_s"] / peak)
        assert row["file_mb"] == pytest.approx(colour_onnx.stat().st_size / 1e6)
    assert data["machine"]["threads"] == 1 and data["machine"]["cpu"]
    markdown = out_md.read_text()
    assert markdown.startswith("| model | precision | device | size | batch | status |")
    assert markdown.count("| colour.onnx | fp32 | cpu |") == 4
    assert "Method: " in markdown and "Machine: " in markdown
    assert "colour.onnx" in result.output and "Method: " in result.output


def test_default_size_is_the_models_own(colour_onnx):
    result = bench(colour_onnx, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"{INPUT_SIZE[0]}x{INPUT_SIZE[1]}" in result.output


def test_a_device_that_cannot_run_is_a_failed_row_not_a_crash(colour_onnx, tmp_path):
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, "--sizes", "16", "--device", "cpu,tensorrt", "--json", out_json)
    assert result.exit_code == 0, result.output
    cpu, trt = json.loads(out_json.read_text())["rows"]
    assert cpu["status"] == "ran"
    # 16 is not the model's input size (24x40): refused before TensorRT is even looked for.
    assert trt["status"].startswith("failed: TensorRT engines are built for the model's input size 24x40")
    assert trt["p50_ms"] is None and trt["miou"] is None
    assert "1 of 2 rows failed" in result.output


def test_coco_scores_each_row_as_tseg_infer_eval_does(colour_onnx, tmp_path):
    from tseg.runtime.predict import InferSettings, infer_coco

    root = tmp_path / "data"
    root.mkdir()
    write_tiny_coco(root)
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, "--coco", root / "val.json", "--data", root, "--json", out_json)
    assert result.exit_code == 0, result.output
    [row] = json.loads(out_json.read_text())["rows"]
    expected = infer_coco(root / "val.json", data_root=root, evaluate=True,
                          settings=InferSettings(model=colour_onnx, out=tmp_path / "eval", progress=False))
    assert row["miou"] == pytest.approx(expected.scores.miou)
    assert row["miou"] > 0.5


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["missing.onnx"], ["model file not found: missing.onnx"]),
        (["{model}", "--device", "gpu"], ["unknown device 'gpu'", "cpu, cuda, tensorrt"]),
        (["{model}", "--sizes", "256,big"], ["--sizes: need comma-separated integers", "'256,big'"]),
        (["{model}", "--sizes", "0"], ["--sizes: need comma-separated integers in 1..8192", "got 0"]),
        (["{model}", "--batch-sizes", "x"], ["--batch-sizes: need comma-separated integers"]),
        (["{model}", "--json", "{model}"], ["would overwrite an input"]),
        (["{model}", "--markdown", "{model}/under/a/file.md"], ["is a file, so the report's folder cannot be made"]),
        (["{model}", "--data", "."], ["--data is the image root of --coco"]),
        ([], ["need at least one MODEL.onnx"]),
    ],
)
def test_bad_input_is_one_line_and_exit_1(colour_onnx, args, fragments):
    one_line_error(bench(*[a.format(model=colour_onnx) for a in args]), *fragments)


def test_a_non_tseg_onnx_is_refused(tmp_path):
    plain = write_colour_model(tmp_path / "plain.onnx", props={})
    one_line_error(bench(plain), "has no tseg metadata", "export it with tseg-export")


def test_checkpoint_without_torch_names_the_extra(colour_onnx, tmp_path, monkeypatch):
    import importlib

    real = importlib.import_module

    def no_train(name, *args, **kwargs):
        if name.startswith("tseg.train"):
            raise ImportError("No module named 'torch'")
        return real(name, *args, **kwargs)

    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not read")
    monkeypatch.setattr(importlib, "import_module", no_train)
    one_line_error(bench(colour_onnx, "--checkpoint", checkpoint), "--checkpoint needs PyTorch",
                   "pip install 'tseg[train]'")


def test_the_cli_imports_neither_torch_nor_tseg_train():
    code = (
        "import sys, tseg.runtime.bench.cli, tseg.runtime.bench.measure, tseg.runtime.bench.report;"
        "bad = [m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'tseg.train', 'tseg.export'))];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def qdq_colour_model(path):
    """The colour model as an INT8 QDQ file (precision int8 in its metadata)."""
    import dataclasses

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from tests.onnx_models import colour_metadata

    meta = dataclasses.replace(colour_metadata(), precision="int8")
    inits = [
        numpy_helper.from_array(np.array(0.02, np.float32), "s"),
        numpy_helper.from_array(np.array(128, np.uint8), "z"),
        numpy_helper.from_array(np.array(0, np.int8), "wz"),
        numpy_helper.from_array(np.ones((4, 3, 1, 1), np.int8), "wq"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("DequantizeLinear", ["wq", "s", "wz"], ["w"]),
        helper.make_node("Conv", ["dq", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 3, "h", "w"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 4, "h", "w"])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, meta.to_props())
    onnx.save(model, str(path))
    return path


def test_an_int8_row_is_compared_with_an_int8_gemm(colour_onnx, tmp_path):
    qdq = qdq_colour_model(tmp_path / "colour.int8.onnx")
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, qdq, "--sizes", "32", "--json", out_json)
    assert result.exit_code == 0, result.output
    data = json.loads(out_json.read_text())
    fp32, int8 = data["rows"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert fp32["peak"] == "fp32 GEMM on cpu" and int8["peak"] == "int8 GEMM on cpu"
    assert int8["gflops"] == fp32["gflops"]  # QDQ: the same Conv at the same shapes
    peaks = data["peaks_gflops_per_s"]
    ops = [g.split(" ")[0] for g in data["peak_gemms"]["int8 GEMM on cpu"]]
    assert ops == ["MatMulInteger"] * 3 + ["QLinearMatMul"] * 3
    assert int8["peak_fraction"] == pytest.approx(int8["gflops_per_s"] / peaks["int8 GEMM on cpu"])
    assert fp32["peak_fraction"] == pytest.approx(fp32["gflops_per_s"] / peaks["fp32 GEMM on cpu"])



def test_a_gpu_peak_keeps_its_gemm_on_the_device(tmp_path):
    """resident_gemm binds once and reruns (bound on "cpu" here, as BoundRunner's tests run its GPU path)."""
    import numpy as np
    import onnx as onnx_lib

    from tseg.runtime.bench.machine import gemm_graph, gemm_input, resident_gemm
    from tseg.runtime.session import create_session

    shape = (8, 5, 3)
    for kind, op in (("fp32", "MatMul"), ("int8", "MatMulInteger")):
        model = gemm_graph(kind, shape, "cpu", op)
        path = tmp_path / f"{kind}.onnx"
        onnx_lib.save(model, str(path))
        weights = onnx_lib.numpy_helper.to_array(model.graph.initializer[0])
        data = gemm_input(kind, shape, "cpu")
        run, fetch = resident_gemm(create_session(path, device="cpu", threads=1), data, device_type="cpu", device_id=0)
        run()
        run()
        expected = data.astype(np.int64) @ weights.astype(np.int64) if kind == "int8" else data @ weights
        np.testing.assert_allclose(fetch(), expected, rtol=1e-5)
