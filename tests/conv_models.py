"""A tiny tseg model for tests: a 1x1 convolution with tseg metadata, and variants of it.

Label k (k >= 1) wins where input channel k-1 is brightest, so its labels are easy to
predict; the builders also make graphs and metadata that do not fit each other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tseg.runtime.model.metadata import PREFIX, ModelMetadata, default_palette

CLASSES = ("bg", "red", "green")
SIZE = (8, 12)


def metadata(*, classes=CLASSES, **changes) -> ModelMetadata:
    values = dict(
        classes=classes,
        palette=default_palette(len(classes)),
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        input_size=SIZE,
        model_name="conv1x1",
        tseg_version="test",
        extra={"epoch": 1},
    )
    values.update(changes)
    return ModelMetadata(**values)


def save_model(path: Path, graph: onnx.GraphProto, props: dict[str, str]) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in props.items():
        model.metadata_props.add(key=key, value=value)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def conv_model(
    path: Path,
    *,
    props: dict[str, str] | None = None,
    classes: tuple[str, ...] = CLASSES,
    out_channels: int | None = None,
    in_channels: int = 3,
    input_shape: list | None = None,
    output_shape: list | None = None,
) -> Path:
    """A tseg model: a 1x1 convolution; label k (k >= 1) wins where channel k-1 is brightest.

    Declared shapes default to (N, C, H, W) with dynamic N, H, W; pass others to
    build graphs whose declared input or output does not fit the metadata.
    """
    out_channels = len(classes) if out_channels is None else out_channels
    weight = np.zeros((out_channels, in_channels, 1, 1), np.float32)
    for label in range(1, out_channels):
        weight[label, (label - 1) % in_channels] = 1.0
    bias = np.zeros(out_channels, np.float32)
    bias[0] = 0.5  # background where no channel is above the mean
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["logits"])],
        "conv1x1",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, input_shape or ["N", in_channels, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, output_shape or ["N", out_channels, "H", "W"])],
        [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")],
    )
    return save_model(path, graph, metadata(classes=classes).to_props() if props is None else props)


def model_with_props(path: Path, **raw: str) -> Path:
    """The conv model with some metadata properties replaced by raw strings (None deletes)."""
    props = metadata().to_props()
    for key, value in raw.items():
        if value is None:
            props.pop(PREFIX + key)
        else:
            props[PREFIX + key] = value
    return conv_model(path, props=props)
