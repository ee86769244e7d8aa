"""One .onnx file without a session: what its graph takes and gives, its metadata, its digest, its names.

Everything in tseg that looks at a model file before (or without) ONNX Runtime comes here:

- :func:`read_model_file`: the graph's inputs and outputs, the metadata_props, the sha256
  and whether weights live in external files (TensorRT's provider options, Triton's
  config, tseg-bench's refusals);
- :func:`load_model`: the parsed ``ModelProto`` itself (tseg-bench's FLOP count);
- :func:`check_graph_io`: the one graph contract (one (N, 3, H, W) float input, an
  (N, C, h, w) float output), for a file's graph here and for an open session alike;
- :func:`has_tseg_marker`: a byte search that skips other tools' .onnx files cheaply
  when tseg-infer looks for the newest model under runs/;
- the precision siblings' names (``best.fp16.onnx``, ``best.int8.rejected.onnx``) that
  tseg-export writes and tseg-infer looks for.

Every read starts with :func:`tseg.runtime.inputs.check_model_file` (a regular file of
a model's size and first bytes), so a FIFO or a sparse giant is refused unread.
"""

from __future__ import annotations

import functools
import hashlib
import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import check_model_file, open_input
from tseg.runtime.model.metadata import PRECISIONS, PREFIX, ModelMetadata, metadata_props

INPUT_TYPE = "tensor(float)"  # what tseg's preprocessing makes
OUTPUT_TYPES = ("tensor(float)", "tensor(float16)", "tensor(double)")
REJECTED_SUFFIX = ".rejected.onnx"  # what tseg-export leaves when a file fails its parity check
_MARKER = (PREFIX + "schema").encode()  # a metadata key every tseg export carries

Dim = int | str | None
"""A graph dimension: an int where static, a symbolic name (str) or None where unknown."""


class GraphTensor(Protocol):
    """A graph input or output as ONNX Runtime's ``NodeArg`` and :class:`TensorInfo` both show it."""

    name: str
    type: str
    shape: Sequence[Dim] | None


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output read from the file, spelled as ONNX Runtime spells it.

    Attributes:
        name: the tensor's name in the graph.
        type: ONNX Runtime's type name, e.g. "tensor(float)" ('' when not a tensor).
        shape: its dims (see :data:`Dim`), or None when the graph gives no shape.
    """

    name: str
    type: str
    shape: tuple[Dim, ...] | None


@dataclass(frozen=True)
class ModelFile:
    """What tseg reads from an .onnx file before any session exists.

    Attributes:
        sha256: of the file's bytes.
        inputs: the graph inputs that are not initializers.
        outputs: the graph outputs.
        props: the model's metadata_props.
        external_data: some initializer keeps its weights in a file beside the model.
    """

    sha256: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    props: dict[str, str]
    external_data: bool = False


# ---------------------------------------------------------------------- reading


def _load(path: str) -> tuple[bytes, object]:
    """The file's bytes and its ``ModelProto`` (external weights, if any, are not loaded)."""
    import onnx

    check_model_file(path, what="model")
    try:
        data = Path(path).read_bytes()
        return data, onnx.load_model_from_string(data)
    except Exception as err:  # OSError, protobuf's DecodeError, onnx's own errors
        reason = str(err).strip()[:200] or type(err).__name__
        raise TsegError(f"{path} is not a readable ONNX model: {reason}") from None


def load_model(path: str | Path):
    """The file's parsed ``onnx.ModelProto``, its external weights (if any) not loaded.

    Raises:
        TsegError: not a regular file of a model's size and first bytes, or not ONNX.
    """
    return _load(str(path))[1]


def read_model_file(path: str | Path) -> ModelFile:
    """The sha256, graph inputs and outputs and metadata_props of an .onnx file.

    Read once per (path, size, modification time): a session reads it twice.

    Raises:
        TsegError: the file cannot be read or is not an ONNX model.
    """
    try:
        stat = os.stat(path)
    except OSError as err:
        raise TsegError(f"{path} is not a readable ONNX model: {err.strerror or err}") from None
    return _read_model_file(str(path), stat.st_size, stat.st_mtime_ns)


def _tensor_info(value_info) -> TensorInfo:
    import onnx

    if not value_info.type.HasField("tensor_type"):
        return TensorInfo(value_info.name, "", None)
    tensor = value_info.type.tensor_type
    name = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "undefined"
    if not tensor.HasField("shape"):
        return TensorInfo(value_info.name, f"tensor({name})", None)
    dims = tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param if d.HasField("dim_param") else None)
        for d in tensor.shape.dim
    )
    return TensorInfo(value_info.name, f"tensor({name})", dims)


@functools.lru_cache(maxsize=8)
def _read_model_file(path: str, size: int, mtime_ns: int) -> ModelFile:
    import onnx

    data, proto = _load(path)
    initializers = {tensor.name for tensor in proto.graph.initializer}
    inputs = tuple(_tensor_info(i) for i in proto.graph.input if i.name not in initializers)
    if not inputs and not proto.metadata_props:
        raise TsegError(f"{path} is not a readable ONNX model: no graph inputs and no metadata")
    return ModelFile(
        sha256=hashlib.sha256(data).hexdigest(),
        inputs=inputs,
        outputs=tuple(_tensor_info(o) for o in proto.graph.output),
        props=metadata_props(proto),
        external_data=any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer),
    )


def has_tseg_marker(path: Path) -> bool:
    """True when the file holds tseg's metadata keys: a byte search, nothing is parsed.

    Cheap enough to run over every .onnx under runs/ to skip the ones other tools left
    there; :func:`read_model_file` and :class:`~tseg.runtime.model.metadata.ModelMetadata`
    decide when the model is opened.
    """
    try:
        check_model_file(path)  # a regular file of a model's size and first bytes: never a FIFO or 4 GB of zeros
        with open_input(path, what="model") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.rfind(_MARKER) >= 0
    except (TsegError, OSError, ValueError):  # unreadable, or not a model
        return False


# ---------------------------------------------------------------------- the graph contract


def static_dim(dim: object) -> int | None:
    """A graph dimension as an int, or None when it is symbolic or unknown."""
    return dim if isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 else None


def _check_dims(what: str, shape: Sequence[object], expected: Sequence[int | None], names: str) -> None:
    for dim, want, name in zip(shape, expected, names.split(), strict=True):
        got = static_dim(dim)
        if want is not None and got is not None and got != want:
            raise TsegError(f"{what}: need {name} {want}, the graph has {got} (shape {list(shape)})")


def check_graph_io(inputs: Sequence[GraphTensor], outputs: Sequence[GraphTensor], metadata: ModelMetadata, *,
                   source: str, sizes: bool = True) -> tuple[GraphTensor, GraphTensor]:
    """Checks that a graph's inputs and outputs fit its metadata, before any image is run.

    The input must be one rank-4 float tensor (N, 3, H, W) with N 1 or dynamic and H, W
    the metadata's input size or dynamic; the first output a rank-4 float tensor
    (N, C, h, w) with C the number of classes where the graph states it (otherwise
    :meth:`~tseg.runtime.segment.segmenter.Segmenter.run_batch` checks it on every run).

    Args:
        inputs: the graph inputs (a session's ``get_inputs()`` or :attr:`ModelFile.inputs`).
        outputs: the graph outputs (``get_outputs()`` or :attr:`ModelFile.outputs`).
        metadata: the model's tseg metadata.
        source: names the model in errors.
        sizes: also hold N and H, W to what tseg's runtime feeds (batches of any size or 1,
            the metadata's input size). False for a server whose clients feed the sizes
            the graph states (Triton): then only the channels are held.

    Returns:
        The image input and the scores output.

    Raises:
        TsegError: naming the model, what the graph has and what tseg needs.
    """
    if len(inputs) != 1:
        raise TsegError(f"{source}: need a model with one input (an image batch), got {len(inputs)}")
    if not outputs:
        raise TsegError(f"{source}: need a model with an output (class scores), got none")
    image, scores = inputs[0], outputs[0]
    for what, tensor, types in (("input", image, (INPUT_TYPE,)), ("output", scores, OUTPUT_TYPES)):
        if tensor.type not in types:
            raise TsegError(f"{source}: need a {' or '.join(types)} {what}, got {tensor.type}")
        if tensor.shape is None or len(tensor.shape) != 4:
            raise TsegError(f"{source}: need a rank-4 {what} (N, C, H, W), got shape {tensor.shape}")
    height, width = metadata.input_size if sizes else (None, None)
    batch = 1 if sizes else None
    _check_dims(f"{source} input", image.shape, (batch, 3, height, width), "batch channels height width")
    _check_dims(
        f"{source} output (one score per class: {metadata.num_classes})",
        scores.shape,
        (batch, metadata.num_classes, None, None),
        "batch channels height width",
    )
    return image, scores


# ---------------------------------------------------------------------- the precisions' file names


def precision_path(onnx_path: Path, precision: str) -> Path:
    """runs/RUN/best.onnx -> runs/RUN/best.fp16.onnx (FP32 keeps the plain name)."""
    return onnx_path if precision == "fp32" else onnx_path.with_suffix(f".{precision}.onnx")


def rejected_path(path: Path) -> Path:
    """runs/RUN/best.int8.onnx -> runs/RUN/best.int8.rejected.onnx: not a name the runtime picks up."""
    return path.with_suffix(REJECTED_SUFFIX)


def fp32_path(path: Path) -> Path | None:
    """runs/RUN/best.int8.onnx -> runs/RUN/best.onnx (the inverse of :func:`precision_path`); None for an FP32 name."""
    for precision in PRECISIONS:
        suffix = f".{precision}.onnx"
        if precision != "fp32" and path.name.endswith(suffix):
            return path.with_name(path.name[: -len(suffix)] + ".onnx")
    return None
