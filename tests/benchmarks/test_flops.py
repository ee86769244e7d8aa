"""tseg-bench's FLOP counter on hand-built graphs whose FLOPs are worked out by hand."""

from __future__ import annotations

import sys

import numpy as np
import onnx  # noqa: E402 (a base dependency)
import pytest
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from tseg.benchmarks.flops import count_flops, count_graph_flops, node_flops  # noqa: E402


def _init(name: str, shape: tuple[int, ...], dtype=np.float32):
    return numpy_helper.from_array(np.ones(shape, dtype), name)


def _model(nodes, initializers, output: str, *, opset: int = 17):
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])
    out = helper.make_tensor_value_info(output, TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "g", [image], [out], initializer=initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def every_op_model():
    """Conv (stride 2) -> grouped, dilated Conv -> ConvTranspose -> Reshape -> MatMul -> Gemm (transB)."""
    nodes = [
        helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["c2"], group=4, dilations=[2, 2], pads=[2, 2, 2, 2]),
        helper.make_node("ConvTranspose", ["c2", "w3"], ["c3"], strides=[2, 2]),
        helper.make_node("Reshape", ["c3", "shape"], ["r"]),
        helper.make_node("MatMul", ["r", "m"], ["mm"]),
        helper.make_node("Gemm", ["mm", "g", "gb"], ["out"], transB=1),
    ]
    inits = [
        _init("w1", (8, 3, 3, 3)), _init("b1", (8,)), _init("w2", (8, 2, 3, 3)), _init("w3", (8, 4, 2, 2)),
        numpy_helper.from_array(np.array([4, -1], np.int64), "shape"), _init("m", (256, 10)),
        _init("g", (6, 10)), _init("gb", (6,)),
    ]
    return _model(nodes, inits, "out")


def test_every_counted_op_at_its_actual_shapes():
    # At 16x16: conv1 -> (1, 8, 8, 8); conv2 (groups 4: 2 input channels per group) -> (1, 8, 8, 8);
    # ConvTranspose (8 -> 4 channels, 2x2, stride 2) -> (1, 4, 16, 16); reshape (4, 256);
    # MatMul (4, 256) x (256, 10); Gemm (4, 10) x (10, 6)^T. A multiply-add is 2 FLOPs; no bias adds.
    expected = {
        "Conv": 2 * (8 * 8 * 8) * (3 * 3 * 3) + 2 * (8 * 8 * 8) * (2 * 3 * 3),
        "ConvTranspose": 2 * (8 * 8 * 8) * (4 * 2 * 2),
        "MatMul": 2 * 4 * 10 * 256,
        "Gemm": 2 * 4 * 6 * 10,
    }
    count = count_graph_flops(every_op_model(), height=16, width=16)
    assert count.note == ""
    assert count.by_op == expected
    assert count.flops == sum(expected.values()) == 27648 + 18432 + 16384 + 20480 + 480


def conv_model():
    nodes = [
        helper.make_node("Conv", ["image", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c1", "w2"], ["logits"], group=4, pads=[1, 1, 1, 1]),
    ]
    return _model(nodes, [_init("w1", (8, 3, 3, 3)), _init("w2", (4, 2, 3, 3))], "logits")


@pytest.mark.parametrize(("height", "width"), [(32, 32), (64, 48), (17, 9)])
def test_conv_flops_follow_the_input_size(height, width):
    out_h, out_w = (height + 1) // 2, (width + 1) // 2  # 3x3, stride 2, pad 1
    expected = 2 * 8 * out_h * out_w * 27 + 2 * 4 * out_h * out_w * 18
    assert count_graph_flops(conv_model(), height=height, width=width).flops == expected


def test_a_qdq_graph_counts_as_its_float_graph():
    """INT8 QDQ files: the Conv weight is a DequantizeLinear output, its shape from inference."""
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero = numpy_helper.from_array(np.array(0, np.uint8), "z")
    wzero = numpy_helper.from_array(np.array(0, np.int8), "wz")
    nodes = [
        helper.make_node("QuantizeLinear", ["image", "s", "z"], ["q"]),
        helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
        helper.make_node("DequantizeLinear", ["w1q", "s", "wz"], ["w1"]),
        helper.make_node("Conv", ["dq", "w1"], ["c1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("DequantizeLinear", ["w2q", "s", "wz"], ["w2"]),
        helper.make_node("Conv", ["c1", "w2"], ["logits"], group=4, pads=[1, 1, 1, 1]),
    ]
    inits = [scale, zero, wzero, _init("w1q", (8, 3, 3, 3), np.int8), _init("w2q", (4, 2, 3, 3), np.int8)]
    qdq = _model(nodes, inits, "logits")
    plain = count_graph_flops(conv_model(), height=32, width=40).flops
    assert count_graph_flops(qdq, height=32, width=40).flops == plain


def test_integer_ops_and_gemm_transa():
    assert node_flops("QLinearConv", [[1, 3, 8, 8], None, None, [5, 3, 3, 3]], [[1, 5, 8, 8]], {}) == 2 * 320 * 27
    assert node_flops("MatMulInteger", [[2, 7, 3], [3, 4]], [[2, 7, 4]], {}) == 2 * 56 * 3
    assert node_flops("Gemm", [[5, 4], [5, 6]], [[4, 6]], {"transA": 1}) == 2 * 24 * 5
    assert node_flops("Relu", [[1, 3]], [[1, 3]], {}) == 0
    assert node_flops("Conv", [None, [5, 3, 3, 3]], [None], {}) is None


def test_a_file_on_disk_and_a_file_that_is_not_onnx(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(), str(path))
    assert count_flops(path, height=32, width=32).flops == count_graph_flops(conv_model(), height=32, width=32).flops
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\xff not a protobuf")
    count = count_flops(bad, height=32, width=32)
    assert count.flops is None and count.note.startswith("FLOPs unavailable")


def test_without_onnx_flops_are_unavailable_with_a_note(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    onnx.save(conv_model(), str(path))
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    count = count_flops(path, height=32, width=32)
    assert count.flops is None
    assert count.note == "FLOPs unavailable: the onnx package is not installed (pip install onnx)"


def _single_conv(height: int, width: int, **attributes):
    node = helper.make_node("Conv", ["image", "w"], ["out"], **attributes)
    return count_graph_flops(_model([node], [_init("w", (2, 3, 3, 3))], "out"), height=height, width=width)


def test_taps_on_zero_padding_are_left_out_of_the_effective_count():
    # Dilation 4, pads 4 on a 4x4 image: of the 3 taps per axis only the centre one lands on the image
    # (the others are 4 pixels away), so each output pixel sees 1 x 1 of its 3 x 3 window.
    dilated = _single_conv(4, 4, dilations=[4, 4], pads=[4, 4, 4, 4])
    assert dilated.flops == 2 * (2 * 4 * 4) * 27
    assert dilated.effective == 2 * 2 * 3 * (4 * 4) * 1
    # 3x3, pad 1 on 4x4: per axis the border outputs see 2 taps, the inner ones 3: 2 + 3 + 3 + 2 = 10 pairs.
    padded = _single_conv(4, 4, pads=[1, 1, 1, 1])
    assert padded.effective == 2 * 2 * 3 * 10 * 10 and padded.flops == 2 * 2 * 16 * 27
    # SAME_UPPER, stride 2 on 5x5: 3 outputs per axis, one pad before; taps (-1, 0, 1), (1, 2, 3), (3, 4, 5): 7.
    same = _single_conv(5, 5, strides=[2, 2], auto_pad="SAME_UPPER")
    assert same.effective == 2 * 2 * 3 * 7 * 7
    # No padding: every tap is on the image.
    valid = _single_conv(6, 6)
    assert valid.effective == valid.flops == 2 * 2 * 16 * 27
