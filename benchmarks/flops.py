"""FLOPs per image counted from an ONNX graph at the actual input size.

Counted: Conv, ConvTranspose, MatMul, Gemm and their integer forms (ConvInteger, QLinearConv,
MatMulInteger, QLinearMatMul), which hold nearly all of a segmentation network's arithmetic.
A multiply-add is 2 FLOPs (as ``torch.utils.flop_counter`` counts). Bias adds, activations,
normalisation, pooling and resizing are not counted, in any operator, so counts from
different graphs of the same network (FP32, FP16, INT8 QDQ) agree.

Two counts: ``flops``, every kernel tap (the convention papers and torch's counter use), and
``effective``, the taps that fall on the input rather than on a convolution's zero padding,
which ONNX Runtime's (and oneDNN's) direct convolution kernels skip. They differ where padding
is a large part of the window: a dilated 3x3 convolution wider than its feature map
(DeepLabV3's ASPP at rates 12/24/36 on a 16x16 map is mostly padding) computes little more
than its centre tap. Achieved GFLOP/s is judged on ``effective``.

Shapes come from ``onnx.shape_inference`` (with data propagation, for sizes computed by
Shape -> Gather -> Concat chains) on a copy of the graph whose input is made static,
(1, 3, H, W). In a QDQ graph the weights are DequantizeLinear outputs; inference gives
their shapes like any other tensor's.

``onnx`` is a base dependency of tseg; should it be missing all the same (a trimmed
install), :func:`count_flops` returns an unavailable count with a one-line note instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

# op type -> (index of the input whose shape is "data", index of the weight / second operand)
_CONV_OPS = {"Conv": (0, 1), "ConvInteger": (0, 1), "QLinearConv": (0, 3)}
_MATMUL_OPS = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
COUNTED_OPS = (*_CONV_OPS, "ConvTranspose", *_MATMUL_OPS, "Gemm")


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one image through a graph.

    Attributes:
        flops: FLOPs per image (multiply-add = 2), or None when they could not be counted.
        by_op: FLOPs per image per operator type (only counted types).
        note: why ``flops`` is None, or '' when it is known.
        effective: ``flops`` less the convolution taps on zero padding (None with ``flops``).
    """

    flops: int | None
    by_op: dict[str, int] = field(default_factory=dict)
    note: str = ""
    effective: int | None = None


def _static_dims(value_info) -> list[int] | None:
    """A tensor's dims as ints, or None when the shape or any dim is unknown."""
    tensor_type = value_info.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    dims = []
    for dim in tensor_type.shape.dim:
        if not dim.HasField("dim_value"):
            return None
        dims.append(int(dim.dim_value))
    return dims


def static_input_copy(model, *, height: int, width: int, batch: int = 1):
    """A copy of ``model`` whose image input is (batch, 3, height, width) and whose other shapes are cleared.

    Cleared: ``value_info`` and the outputs' shapes, which an exporter writes with symbolic dims
    that inference would otherwise keep.
    """
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        from tseg.runtime.errors import TsegError

        raise TsegError(f"FLOPs: need a graph with one image input, got {len(inputs)}")
    shape = inputs[0].type.tensor_type.shape
    del shape.dim[:]
    for value in (batch, 3, height, width):
        shape.dim.add().dim_value = value
    del graph.value_info[:]
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    return copy


def _shapes(model) -> dict[str, list[int] | None]:
    """Every named tensor's static shape after inference (initializers included)."""
    graph = model.graph
    shapes: dict[str, list[int] | None] = {}
    for info in (*graph.input, *graph.value_info, *graph.output):
        shapes[info.name] = _static_dims(info)
    for init in graph.initializer:
        shapes[init.name] = [int(d) for d in init.dims]
    return shapes


def valid_taps(*, in_size: int, out_size: int, kernel: int, stride: int, dilation: int, pad_begin: int) -> int:
    """Along one axis: (output position, kernel tap) pairs whose input index lies inside [0, in_size)."""
    import numpy as np

    index = (np.arange(out_size)[:, None] * stride - pad_begin) + np.arange(kernel)[None, :] * dilation
    return int(np.count_nonzero((index >= 0) & (index < in_size)))


def _pads_begin(attributes: dict[str, object], data: list[int], out: list[int], weight: list[int]) -> list[int] | None:
    """Leading pads of each spatial axis (explicit, VALID or SAME_*); None for anything else."""
    axes = len(data) - 2
    strides = list(attributes.get("strides") or [1] * axes)
    dilations = list(attributes.get("dilations") or [1] * axes)
    auto_pad = attributes.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else str(auto_pad)
    if auto_pad in ("NOTSET", ""):
        pads = list(attributes.get("pads") or [0] * (2 * axes))
        return pads[:axes] if len(pads) == 2 * axes else None
    if auto_pad == "VALID":
        return [0] * axes
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        begins = []
        for i in range(axes):
            total = max(0, (out[2 + i] - 1) * strides[i] + (weight[2 + i] - 1) * dilations[i] + 1 - data[2 + i])
            begins.append(total // 2 if auto_pad == "SAME_UPPER" else total - total // 2)
        return begins
    return None


def conv_effective_flops(data: list[int], out: list[int], weight: list[int], attributes: dict[str, object]) -> int:
    """FLOPs of a convolution on its input alone: 2 * N * C_out * (C_in / groups) * the valid (output, tap)
    pairs of each spatial axis (the taps on zero padding left out). Equals the plain count without padding."""
    axes = len(data) - 2
    nominal = 2 * math.prod(out) * math.prod(weight[1:])
    pads = _pads_begin(attributes, data, out, weight)
    if pads is None or len(out) != len(data) or len(weight) != len(data):
        return nominal
    strides = list(attributes.get("strides") or [1] * axes)
    dilations = list(attributes.get("dilations") or [1] * axes)
    pairs = math.prod(
        valid_taps(in_size=data[2 + i], out_size=out[2 + i], kernel=weight[2 + i], stride=strides[i],
                   dilation=dilations[i], pad_begin=pads[i])
        for i in range(axes)
    )
    return 2 * out[0] * out[1] * weight[1] * pairs


def node_flops(op_type: str, inputs: Sequence[list[int] | None], outputs: Sequence[list[int] | None],
               attributes: dict[str, object]) -> int | None:
    """FLOPs of one node from its input and output shapes (None: a needed shape is unknown).

    Conv (and its integer forms): 2 * prod(output) * prod(weight[1:]); the weight is
    (C_out, C_in / groups, kH, kW), so groups, strides and dilations are in the shapes.
    ConvTranspose: every input value meets C_out / groups * kH * kW weights:
    2 * prod(input) * prod(weight[1:]). MatMul: 2 * prod(output) * K. Gemm: 2 * M * N * K.
    """
    def shape(seq, index):
        return seq[index] if index < len(seq) else None

    if op_type in _CONV_OPS:
        _, w = _CONV_OPS[op_type]
        out, weight = shape(outputs, 0), shape(inputs, w)
        return None if out is None or weight is None else 2 * math.prod(out) * math.prod(weight[1:])
    if op_type == "ConvTranspose":
        data, weight = shape(inputs, 0), shape(inputs, 1)
        return None if data is None or weight is None else 2 * math.prod(data) * math.prod(weight[1:])
    if op_type in _MATMUL_OPS:
        a, _ = _MATMUL_OPS[op_type]
        out, left = shape(outputs, 0), shape(inputs, a)
        return None if out is None or left is None or not left else 2 * math.prod(out) * left[-1]
    if op_type == "Gemm":
        out, left = shape(outputs, 0), shape(inputs, 0)
        if out is None or left is None or len(left) != 2:
            return None
        k = left[0] if attributes.get("transA", 0) else left[1]
        return 2 * math.prod(out) * k
    return 0


def count_graph_flops(model, *, height: int, width: int) -> FlopCount:
    """FLOPs per image of an ``onnx.ModelProto`` at input (1, 3, height, width).

    Subgraphs (If, Loop) are not entered: a graph with one is reported as unavailable.
    """
    import onnx

    static = static_input_copy(model, height=height, width=width)
    try:
        inferred = onnx.shape_inference.infer_shapes(static, data_prop=True)
    except Exception as err:  # onnx raises its own InferenceError types
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return FlopCount(None, note=f"FLOPs unavailable: shape inference failed: {first[:200]}")
    shapes = _shapes(inferred)
    by_op: dict[str, int] = {}
    unknown: list[str] = []
    padding = 0  # FLOPs of convolution taps on zero padding
    for node in inferred.graph.node:
        if node.op_type in ("If", "Loop", "Scan"):
            return FlopCount(None, note=f"FLOPs unavailable: the graph has a {node.op_type} subgraph")
        if node.op_type not in COUNTED_OPS:
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        flops = node_flops(
            node.op_type,
            [shapes.get(name) if name else None for name in node.input],
            [shapes.get(name) if name else None for name in node.output],
            attributes,
        )
        if flops is None:
            unknown.append(node.name or node.op_type)
            continue
        by_op[node.op_type] = by_op.get(node.op_type, 0) + flops
        if node.op_type in _CONV_OPS and flops:
            data_index, weight_index = _CONV_OPS[node.op_type]
            data = shapes.get(node.input[data_index])
            weight = shapes.get(node.input[weight_index])
            out = shapes.get(node.output[0])
            if data is not None and len(data) >= 3:
                padding += flops - conv_effective_flops(data, out, weight, attributes)
    if unknown:
        return FlopCount(
            None, by_op, note=f"FLOPs unavailable: unknown shapes at {len(unknown)} node(s) ({', '.join(unknown[:3])})"
        )
    total = sum(by_op.values())
    return FlopCount(total, by_op, effective=total - padding)


def count_flops(model_path: str | Path, *, height: int, width: int) -> FlopCount:
    """FLOPs per image of an ONNX file at input (1, 3, height, width).

    Returns:
        The count, or an unavailable count with a note when ``onnx`` is not installed, the
        file cannot be parsed, or shapes cannot be inferred.
    """
    try:
        import onnx  # noqa: F401  (load_model needs it)
    except ImportError:
        return FlopCount(None, note="FLOPs unavailable: the onnx package is not installed (pip install onnx)")
    from tseg.runtime.errors import TsegError
    from tseg.runtime.model.onnx_file import load_model

    try:
        model = load_model(model_path)  # as every .onnx is read without a session: a FIFO is refused unread
    except TsegError as err:
        return FlopCount(None, note=f"FLOPs unavailable: {str(err)[:200]}")
    return count_graph_flops(model, height=height, width=width)
