"""FP32 ONNX -> FP16 ONNX with float32 inputs and outputs (onnxconverter-common's converter).

The graph's inputs and outputs stay float32 (``keep_io_types``), so the runtime's
pre- and post-processing do not change; Cast nodes at the edges convert. Ops that
overflow or lose too much in float16 stay float32 (:data:`FP16_OP_BLOCK_LIST`).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

from tseg.export.onnx import check_and_write, load_source, set_metadata
from tseg.runtime.model.metadata import metadata_props

# Kept in float32, with the converter's own list (ML ops, Resize/Upsample, Range, CumSum,
# TopK, Min/Max, NonMaxSuppression, RoiAlign) on top:
# - Resize/Upsample: the scales/sizes inputs are float/int64 control tensors, and ONNX
#   Runtime's CPU Resize has no float16 kernel (a cast pair would be inserted anyway);
# - reductions and normalisations: sums over many elements overflow 65504 or lose the
#   small terms (ReduceSum of a 512x512 map, ReduceL2, Softmax's exp-sum, LayerNorm's variance);
# - Exp/Pow/Log/Sqrt/Reciprocal/Div: overflow or underflow near float16's range edges.
FP16_EXTRA_BLOCK_LIST = (
    "ReduceMean",
    "ReduceSum",
    "ReduceSumSquare",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceProd",
    "GlobalAveragePool",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "Exp",
    "Pow",
    "Log",
    "Sqrt",
    "Reciprocal",
    "Div",
)


def fp16_op_block_list() -> list[str]:
    """The op types converted to float16 never: the converter's defaults plus tseg's additions."""
    from onnxconverter_common import float16

    return sorted({*float16.DEFAULT_OP_BLOCK_LIST, *FP16_EXTRA_BLOCK_LIST})


def _restore_float32_outputs(converted, original) -> None:
    """Makes float32 graph outputs float32 again where the converter left them float16.

    With ``keep_io_types`` onnxconverter-common still ends a graph whose last op is in the
    block list (DeepLabV3's final Resize) with a Cast to float16 named as the output. That
    Cast is dropped (the float32 tensor before it becomes the output) or, where its input has
    other readers, followed by a Cast back to float32.
    """
    from onnx import TensorProto, helper

    was_float = {o.name for o in original.graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    readers: dict[str, int] = {}
    for node in converted.graph.node:
        for name in node.input:
            readers[name] = readers.get(name, 0) + 1
    producer = {out: node for node in converted.graph.node for out in node.output}
    for output in converted.graph.output:
        if output.name not in was_float or output.type.tensor_type.elem_type != TensorProto.FLOAT16:
            continue
        cast = producer.get(output.name)
        before = producer.get(cast.input[0]) if cast is not None and cast.op_type == "Cast" else None
        if before is not None and readers.get(cast.input[0], 0) == 1:
            before.output[list(before.output).index(cast.input[0])] = output.name
            converted.graph.node.remove(cast)
        else:
            half = f"{output.name}_fp16"
            producer[output.name].output[list(producer[output.name].output).index(output.name)] = half
            converted.graph.node.append(helper.make_node("Cast", [half], [output.name], to=TensorProto.FLOAT))
        output.type.tensor_type.elem_type = TensorProto.FLOAT


def convert_fp16(src: Path, dst: Path, *, props: Mapping[str, str]) -> Path:
    """Converts an FP32 ONNX file to FP16, keeping float32 graph inputs and outputs.

    Weights and activations become float16 except in the ops of :func:`fp16_op_block_list`,
    which stay float32 behind Cast nodes. The input is (N, 3, H, W) float32 and the output
    (N, C, H, W) float32 logits, with the source's dynamic axes.

    Args:
        src: the FP32 .onnx file.
        dst: where to write the FP16 file (atomically; nothing else is written).
        props: metadata_props set on top of the source's (e.g. ``tseg.precision``).

    Returns:
        ``dst``.

    Raises:
        TsegError: ``src`` is missing or unreadable, or the converted graph fails onnx.checker.
    """
    import onnx
    from onnxconverter_common import float16

    proto = load_source(src)
    src_props = metadata_props(proto)
    original = onnx.ModelProto()
    original.graph.output.extend(proto.graph.output)  # the converter edits ``proto`` in place
    with warnings.catch_warnings():
        # One UserWarning per distinct weight value outside float16's range (clamped to +-1e-7 or
        # +-1e4 by the converter): thousands of lines for a trained model, and expected.
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            proto,
            keep_io_types=True,
            op_block_list=fp16_op_block_list(),
            disable_shape_infer=False,
        )
    _restore_float32_outputs(converted, original)
    # The converter leaves the old float32 value_info beside the new float16 one for tensors it
    # re-routes through Casts (two entries, two types: onnx.checker refuses the file). The types
    # follow from the graph, so drop the stale annotations and infer them afresh.
    del converted.graph.value_info[:]
    converted = onnx.shape_inference.infer_shapes(converted)
    set_metadata(converted, src_props=src_props, props=props)
    return check_and_write(converted, Path(dst), what="FP16")
