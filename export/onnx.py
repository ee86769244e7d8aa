"""PyTorch checkpoint -> ONNX with dynamic batch and size, tseg metadata, checked.

onnx and onnxslim are imported inside the functions (timm's pattern), so the
module imports without the export extra installed.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from tseg.runtime import __version__
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.model.metadata import ModelMetadata
from tseg.train.checkpoints import ModelSpec

DEFAULT_OPSET = 18
MIN_OPSET = 18  # torch.onnx's dynamo exporter writes nothing older (asked for less, it keeps 18)
INPUT_NAME, OUTPUT_NAME = "image", "logits"


class LogitsOnly(nn.Module):
    """Exposes a tseg model's "out" logits as the single graph output.

    (N, 3, H, W) normalised image -> (N, C, H, W) logits.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image)["out"]


@functools.lru_cache(maxsize=1)
def max_opset() -> int:
    """The newest default-domain opset that both the installed onnx and ONNX Runtime take."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    value = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "probe",
        [value("x", TensorProto.FLOAT, [1])],
        [value("y", TensorProto.FLOAT, [1])],
    )
    options = ort.SessionOptions()
    options.log_severity_level = 4  # the refusals below are expected; keep them off stderr
    for opset in range(onnx.defs.onnx_opset_version(), MIN_OPSET, -1):
        opsets = [helper.make_opsetid("", opset)]
        model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets))
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
            return opset
        except Exception:  # ONNX Runtime refuses an opset newer than it knows
            continue
    return MIN_OPSET


def check_opset(opset: object) -> int:
    """``opset`` if this tseg can export it and ONNX Runtime here can run it.

    The onnx package's bound is checked first: probing ONNX Runtime imports it, and that
    import writes under $HOME, which a refused input should not cause.

    Raises:
        TsegError: not an integer from MIN_OPSET to the newest opset onnx and ONNX Runtime take.
    """
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not MIN_OPSET <= opset <= newest:
        raise TsegError(
            f"opset must be an integer from {MIN_OPSET} (the exporter writes no older one) to {newest}"
            f" (the installed onnx's newest), got {opset!r}",
            parameter="opset",
        )
    if opset > max_opset():
        high = max_opset()
        raise TsegError(
            f"opset {opset} is newer than the installed ONNX Runtime runs; use {MIN_OPSET}..{high}", parameter="opset"
        )
    return opset


def metadata_for(spec: ModelSpec, *, extra: dict) -> ModelMetadata:
    """The runtime metadata of a checkpoint's model."""
    return ModelMetadata(
        classes=spec.classes,
        palette=spec.palette,
        mean=spec.mean,
        std=spec.std,
        input_size=spec.input_size,
        model_name=spec.name,
        tseg_version=__version__,
        extra=extra,
    )


def _torch_export(model: nn.Module, example: torch.Tensor, opset: int):
    from torch.export import Dim

    dims = {0: Dim("batch"), 2: Dim("height"), 3: Dim("width")}
    # The dynamo exporter logs each pass; tseg prints its own summary instead.
    logging.getLogger("torch.onnx").setLevel(logging.WARNING)
    program = torch.onnx.export(
        LogitsOnly(model).eval(),
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes={"image": dims},
        verbose=False,
    )
    return program.model_proto


def set_metadata(proto, *, src_props: Mapping[str, str], props: Mapping[str, str]) -> None:
    """Replaces ``proto``'s metadata_props with ``src_props`` and then ``props`` on top."""
    merged = {**src_props, **props}
    del proto.metadata_props[:]
    for key, value in merged.items():
        proto.metadata_props.add(key=key, value=value)


def check_and_write(proto, dst: Path, *, what: str) -> Path:
    """Runs onnx.checker on ``proto`` and writes it atomically to ``dst``.

    Raises:
        TsegError: the checker refuses the graph (nothing is written).
    """
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TsegError(f"the {what} graph failed onnx.checker: {detail}; nothing was saved") from None
    atomic_write_bytes(dst, proto.SerializeToString())
    return dst


def load_source(src: Path):
    """Loads an .onnx file for conversion.

    Raises:
        TsegError: the file is missing or not an ONNX model.
    """
    import onnx

    src = Path(src)
    if not src.is_file():
        raise TsegError(f"ONNX model not found: {src} (need an existing .onnx file)")
    try:
        return onnx.load(str(src))
    except Exception as err:  # onnx raises DecodeError, OSError, ... for a file that is not a model
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TsegError(f"{src} is not a readable ONNX model: {detail}") from None


def export_onnx(
    model: nn.Module,
    spec: ModelSpec,
    out: str | Path,
    *,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    extra: dict | None = None,
) -> Path:
    """Exports a model to ONNX with dynamic batch, height and width.

    The graph takes a normalised (N, 3, H, W) float32 image and returns
    (N, C, H, W) logits at the same size. tseg's metadata (classes, palette,
    normalisation, input size, model name, version) goes into metadata_props.
    The file is checked with ``onnx.checker`` and written atomically.

    Args:
        model: the trained model, in eval mode.
        spec: its :class:`ModelSpec`.
        out: the .onnx path.
        opset: ONNX opset.
        simplify: run onnxslim (constant folding, redundant-node removal).
        extra: provenance stored under ``tseg.extra`` (run, epoch, metrics).

    Returns:
        The path written.
    """

    out = Path(out)
    height, width = spec.input_size
    example = torch.randn(1, 3, height, width)
    with torch.no_grad():
        proto = _torch_export(model.eval().cpu(), example, opset)
    if simplify:
        import onnxslim

        proto = onnxslim.slim(proto)
    written = [entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")]
    if written != [opset]:
        raise TsegError(f"asked for opset {opset} but the exporter wrote {written}; nothing was saved")
    set_metadata(proto, src_props={}, props=metadata_for(spec, extra=extra or {}).to_props())
    proto.producer_name, proto.producer_version = "tseg", __version__
    return check_and_write(proto, out, what="exported")
