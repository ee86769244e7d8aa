"""tseg-bench's peaks: each row compared with a GEMM of its own kind, through its own engine."""

from __future__ import annotations

import json

import pytest

from tests.benchmarks.test_cli import bench


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

    from tseg.benchmarks.machine import gemm_graph, gemm_input, resident_gemm
    from tseg.runtime.model.session import create_session

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


def test_openvino_rows_sit_beside_onnx_runtimes_with_their_own_peaks(colour_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    qdq = qdq_colour_model(tmp_path / "colour.int8.onnx")
    out_json = tmp_path / "b.json"
    result = bench(colour_onnx, qdq, "--sizes", "32", "--device", "cpu,openvino", "--bf16", "--json", out_json)
    assert result.exit_code == 0, result.output
    rows = json.loads(out_json.read_text())["rows"]
    got = [(r["model"], r["engine"], r["precision"], r["device"], r["peak"]) for r in rows]
    assert got == [
        ("colour.onnx", "onnxruntime", "fp32", "cpu", "fp32 GEMM on cpu"),
        ("colour.onnx", "openvino", "fp32", "openvino", "fp32 GEMM on openvino"),
        ("colour.onnx", "openvino", "bf16", "openvino", "bf16 GEMM on openvino"),  # FP32 files only
        ("colour.int8.onnx", "onnxruntime", "int8", "cpu", "int8 GEMM on cpu"),
        ("colour.int8.onnx", "openvino", "int8", "openvino", "int8 GEMM on openvino"),
    ]
    peaks = json.loads(out_json.read_text())["peak_gemms"]
    assert [g.split(" ")[0] for g in peaks["int8 GEMM on openvino"]] == ["QDQ-MatMul"] * 3
    for row in rows:
        assert row["status"] == "ran" and row["peak_fraction"] > 0
