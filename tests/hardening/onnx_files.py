"""Hand-built ONNX models (a 1x1 convolution, a few hundred bytes) with any tseg metadata.

The harness needs dozens of model files whose metadata is broken in one way each. The
metadata is written here by hand (not with ``tseg.runtime.metadata``), so that values the
runtime would refuse can be stored at all.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

import numpy as np

CLASSES = ["Background", "Metal", "Paper", "Glass"]  # tests/tiny_coco.py's, in label order
GOOD_METADATA: dict[str, object] = {
    "classes": CLASSES,
    "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0], [128, 128, 0]],
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "input_size": [32, 32],
    "model_name": "hand-built-1x1-conv",
    "tseg_version": "0.1.0",
    "extra": {},
}


def metadata_props(
    overrides: Mapping[str, object] | None = None,
    *,
    raw: Mapping[str, str] | None = None,
    drop: Iterable[str] = (),
    schema: str | None = "1",
) -> dict[str, str]:
    """tseg's ``metadata_props``: GOOD_METADATA with some values replaced.

    Args:
        overrides: key -> value, JSON-encoded like tseg-export does (NaN becomes ``NaN``).
        raw: key -> the stored string itself (e.g. not JSON at all).
        drop: keys left out.
        schema: the ``tseg.schema`` string, or None to leave it out.
    """
    values = {**GOOD_METADATA, **(overrides or {})}
    props = {f"tseg.{key}": json.dumps(value) for key, value in values.items() if key not in set(drop)}
    props.update({f"tseg.{key}": text for key, text in (raw or {}).items()})
    if schema is not None:
        props["tseg.schema"] = schema
    return props


def conv_model_bytes(
    *,
    channels: int = len(CLASSES),
    props: Mapping[str, str] | None = None,
    in_channels: int = 3,
    two_inputs: bool = False,
) -> bytes:
    """A serialised ONNX model: image (N, in_channels, H, W) -> logits (N, channels, H, W).

    Args:
        channels: output channels (the class count it really predicts).
        props: metadata_props to store (None: none at all).
        in_channels: the input's channel count (tseg feeds 3).
        two_inputs: add a second graph input that is added to the first.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(channels)
    weight = rng.normal(size=(channels, in_channels, 1, 1)).astype(np.float32)
    bias = np.linspace(-0.5, 0.5, channels, dtype=np.float32)
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", in_channels, "H", "W"])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", channels, "H", "W"])
    inputs, nodes, source = [image], [], "image"
    if two_inputs:
        inputs.append(helper.make_tensor_value_info("shift", TensorProto.FLOAT, ["N", in_channels, "H", "W"]))
        nodes.append(helper.make_node("Add", ["image", "shift"], ["shifted"]))
        source = "shifted"
    nodes.append(helper.make_node("Conv", [source, "weight", "bias"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "hand_built",
        inputs,
        [logits],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="tseg-harness")
    model.ir_version = 9
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()
