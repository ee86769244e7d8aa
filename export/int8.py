"""FP32 ONNX -> INT8 QDQ ONNX: ONNX Runtime's static quantization, calibrated on real images.

Steps: ``quant_pre_process`` (ONNX shape inference, ORT's basic graph optimisation: BN
folding, constant folding), calibration of every tensor to be quantized over the given
images (one at a time, so a large set never sits in memory), then ``quantize_static`` in
QDQ format (QuantizeLinear/DequantizeLinear pairs around float ops: the form ONNX
Runtime's CPU and CUDA providers and TensorRT take). All intermediate files live in a
``tempfile.TemporaryDirectory``; only ``dst`` is written beside the output (atomically).

Settings (:data:`CPU_INT8`), measured with ``benchmarks/precisions.py`` and ORT's per-op
profiles on this CPU (Xeon, AVX-512 VNNI; 512x512, batch 1, 2 threads, random-init models with
settled BatchNorm statistics, runners alternating; speed-up = median of per-repeat ratios).
Final figures, INT8 over ORT FP32 / over PyTorch eager: MobileNetV3 1.29x / 3.0x, ResNet50
3.2x / 4.7x, VGG16-FCN 3.5x / 4.9x.

- uint8 activations, int8 weights (u8s8): ORT's x86 QDQ fusion turns DQ->Conv->Q into
  QLinearConv (MLAS's VNNI u8s8 kernel). With int8 activations (s8s8) the Conv is not
  fused on x86 and runs as DequantizeLinear + float Conv: MobileNetV3 0.53x of FP32,
  against 1.1-1.2x for u8s8 with the same nodes quantized (same run).
- Asymmetric activations (zero point): after ReLU the whole uint8 range is used.
  Symmetric int8 weights (zero point 0), as MLAS's fast path wants.
- Per-channel weights: per-tensor was no faster within noise (MobileNetV3, same run) and
  loses accuracy on depthwise convs.
- No reduce_range: it exists for the u8s8 saturation of pre-VNNI AVX2 (vpmaddubsw);
  VNNI's vpdpbusd accumulates in int32 without it, so the 8th bit is kept.
- Removable activations (Relu/Clip) are folded into the output range (QLinearConv ends
  clamped), the default of ORT.
- What stays float (:data:`DEFAULT_KEEP_FLOAT`, and :func:`plan` below): ops ORT cannot run
  in int8 on the CPU (HardSigmoid/HardSwish, ReduceMean, Resize, Sigmoid, ...) plus a Conv
  whose every reader is such a float op. A QLinearConv there is followed straight by a
  DequantizeLinear of its whole output; in MobileNetV3 (hard-swish after most convs; ORT
  splits it into HardSigmoid + Mul) the Q/DQ pairs, NHWC<->NCHWc transposes and lost
  Conv+activation fusion cost more than the int8 convs save. Same run on MobileNetV3: every
  Conv quantized 1.12x FP32, every quantizable op 1.10x, these defaults 1.26x. ResNet50 and
  VGG16 (Conv->Relu everywhere) quantize every conv either way.
- TensorRT takes only symmetric int8 activations (zero point 0): :data:`TENSORRT_INT8`
  (slow on x86 CPUs, see s8s8 above).
"""

from __future__ import annotations

import contextlib
import io
import itertools
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tseg.export.onnx import check_and_write, load_source, set_metadata
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import metadata_props

__all__ = [
    "CALIB_METHODS",
    "CPU_INT8",
    "DEFAULT_CALIB_METHOD",
    "DEFAULT_KEEP_FLOAT",
    "TENSORRT_INT8",
    "Int8Settings",
    "quantize_int8",
]

CALIB_METHODS = ("minmax", "entropy", "percentile")
# Accuracy first: the 99.999th percentile of |activation| (clamped to the observed min/max) drops
# the rare outliers that stretch a min/max range and waste int8 steps on values almost never
# seen (min/max keeps them); entropy (KL) can clip harder than accuracy allows on wide-tailed
# segmentation logits. Calibration time on MobileNetV3 at 512, 3 images: minmax 2.4 s,
# percentile 3.5 s, entropy 3.9 s.
DEFAULT_CALIB_METHOD = "percentile"
# Op types left in float: ORT has no int8 CPU kernel for them (a Q/DQ pair around each would
# only add work) or int8 would cost accuracy (the last Resize makes the logits; Sigmoid/Softmax).
DEFAULT_KEEP_FLOAT = (
    "HardSigmoid",
    "HardSwish",
    "Mul",
    "ReduceMean",
    "GlobalAveragePool",
    "Resize",
    "Sigmoid",
    "Softmax",
    "ConvTranspose",
)
# Ops whose int8 form only pays when they produce int8 for an int8 reader.
_HEAVY = ("Conv", "ConvTranspose", "MatMul", "Gemm")


@dataclass(frozen=True)
class Int8Settings:
    """Quantization types; see the module docstring for the measurements behind :data:`CPU_INT8`."""

    activations_signed: bool = False
    activations_symmetric: bool = False
    per_channel: bool = True


CPU_INT8 = Int8Settings()
TENSORRT_INT8 = Int8Settings(activations_signed=True, activations_symmetric=True)


def _check_method(method: object) -> None:
    if method not in CALIB_METHODS:
        raise TsegError(f"calibration method: need one of {', '.join(CALIB_METHODS)}, got {method!r}")


def _check_keep_float(keep_float: Sequence[str], graph) -> tuple[set[str], set[str]]:
    """Splits ``keep_float`` into (op types, node names); each entry must name something."""
    import onnx

    if isinstance(keep_float, (str, bytes)):
        raise TsegError(f"keep_float: need a list of op types or node names, got the string {keep_float!r}")
    names = {node.name for node in graph.node}
    op_types, nodes = set(), set()
    for entry in keep_float:
        if entry in names:
            nodes.add(entry)
        elif isinstance(entry, str) and onnx.defs.has(entry):
            op_types.add(entry)
        else:
            present = sorted({node.op_type for node in graph.node})
            raise TsegError(
                f"keep_float: {entry!r} is neither an ONNX op type nor a node of the model;"
                f" the model's op types are {', '.join(present)} (or name nodes)"
            )
    return op_types, nodes


def plan(graph, *, keep_op_types: set[str], keep_nodes: set[str]) -> tuple[list[str], list[str]]:
    """Which op types ORT may quantize, and which nodes stay float.

    A Conv/ConvTranspose/MatMul/Gemm stays float when every reader of its output (or the
    graph output) is float: its int8 result would be dequantized at once.

    Returns:
        (op_types_to_quantize, nodes_to_exclude) for ``quantize_static``.
    """
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    quantizable = sorted((set(QDQRegistry) | set(QLinearOpsRegistry)) - keep_op_types)
    readers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {output.name for output in graph.output}

    def is_float(node) -> bool:
        return node.op_type not in quantizable or node.name in keep_nodes

    exclude = set(keep_nodes)
    for node in graph.node:
        if node.op_type in _HEAVY and node.output[0] not in outputs:
            users = readers.get(node.output[0], [])
            if users and all(is_float(user) for user in users):
                exclude.add(node.name)
    return quantizable, sorted(exclude)


class _OneImage:
    """ORT's CalibrationDataReader shape, for one (3, H, W) image fed as a batch of 1."""

    def __init__(self, feed: dict[str, np.ndarray]) -> None:
        self.feed: dict[str, np.ndarray] | None = feed

    def get_next(self) -> dict[str, np.ndarray] | None:
        feed, self.feed = self.feed, None
        return feed


def _feed(image: object, input_name: str, number: int) -> dict[str, np.ndarray]:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[0] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise TsegError(f"calibration image {number}: need a (3, H, W) float32 array, got {shape}")
    return {input_name: np.ascontiguousarray(image, dtype=np.float32)[None]}


def _calibrate(model: Path, images: Iterable[np.ndarray], *, input_name: str, method: str, op_types: list[str],
               tmp: Path):
    """Tensor ranges over all images, one image per calibration pass (bounded memory)."""
    from onnxruntime.quantization import CalibrationMethod, create_calibrator

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}
    methods["percentile"] = CalibrationMethod.Percentile
    calibrator = create_calibrator(
        model,
        op_types,
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=methods[method],
        providers=["CPUExecutionProvider"],
    )
    # ORT's histogram calibrators print() their progress; tseg prints its own summary.
    with contextlib.redirect_stdout(io.StringIO()):
        for number, image in enumerate(images, start=1):
            calibrator.collect_data(_OneImage(_feed(image, input_name, number)))
        return calibrator.compute_data()


def quantize_int8(
    src: Path,
    dst: Path,
    *,
    calibration: Iterable[np.ndarray],
    method: str,
    keep_float: Sequence[str] = DEFAULT_KEEP_FLOAT,
    props: Mapping[str, str],
    settings: Int8Settings = CPU_INT8,
) -> Path:
    """Quantizes an FP32 ONNX file to INT8 (QDQ), calibrated on ``calibration``.

    Args:
        src: the FP32 .onnx file: (N, 3, H, W) float32 in, (N, C, H, W) logits out.
        dst: where to write the INT8 file (atomically; nothing else is written beside it).
        calibration: (3, H, W) float32 images, preprocessed as the runtime does, at the
            model's input size; read once, one at a time.
        method: one of :data:`CALIB_METHODS`.
        keep_float: op types or node names left in float (see :func:`plan`).
        props: metadata_props set on top of the source's.
        settings: quantization types (:data:`CPU_INT8`, or :data:`TENSORRT_INT8`).

    Returns:
        ``dst``.

    Raises:
        TsegError: unknown method, no calibration image, a calibration image of the wrong
            shape, a keep_float entry that names nothing, an unreadable ``src``.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static, save_tensors_data
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _check_method(method)
    proto = load_source(src)
    src_props = metadata_props(proto)
    keep_op_types, keep_nodes = _check_keep_float(keep_float, proto.graph)
    images = iter(calibration)
    first = next(images, None)
    if first is None:
        raise TsegError("calibration: need at least 1 image for INT8, got none")
    with tempfile.TemporaryDirectory(prefix="tseg-int8-") as folder:
        tmp = Path(folder)
        # Symbolic shape inference gives up on the dynamic H/W of segmentation graphs
        # ("Incomplete symbolic shape inference"); ONNX's own shape inference suffices for CNNs.
        quant_pre_process(str(src), str(tmp / "pre.onnx"), skip_symbolic_shape=True)
        pre = onnx.load(str(tmp / "pre.onnx"))
        op_types, exclude = plan(pre.graph, keep_op_types=keep_op_types, keep_nodes=keep_nodes)
        input_name = pre.graph.input[0].name
        del pre
        ranges = _calibrate(
            tmp / "pre.onnx", itertools.chain([first], images), input_name=input_name, method=method,
            op_types=op_types, tmp=tmp,
        )
        save_tensors_data(ranges, tmp / "ranges.json")
        signed = settings.activations_signed
        quantize_static(
            str(tmp / "pre.onnx"),
            str(tmp / "int8.onnx"),
            None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_exclude=exclude,
            per_channel=settings.per_channel,
            reduce_range=False,
            activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=ranges.calibration_method,
            calibration_cache_path=str(tmp / "ranges.json"),
            extra_options={
                "ActivationSymmetric": settings.activations_symmetric,
                "WeightSymmetric": True,
            },
        )
        quantized = onnx.load(str(tmp / "int8.onnx"))
    set_metadata(quantized, src_props=src_props, props=props)
    return check_and_write(quantized, Path(dst), what="INT8")
