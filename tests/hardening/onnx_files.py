"""Hand-built ONNX models (a 1x1 convolution, a few hundred bytes) with any tseg metadata.

A few misbehave at run time instead (a batch-only failure, a 40 GB allocation), or keep
their weight in an external-data file.

The harness needs dozens of model files whose metadata is broken in one way each. The
metadata is written here by hand (not with ``tseg.runtime.model.metadata``), so that values the
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
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("tseg.harness", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tseg-harness")
    model.ir_version = 9
    for key, value in (props or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _tail_nodes(tail: str) -> tuple[list, list]:
    """(nodes, initializers) that turn the conv's output "conv" into "logits" (see tail_model_bytes)."""
    from onnx import TensorProto, helper, numpy_helper

    if tail == "batch-one":  # logits = Reshape(conv, [1, C, H, W]): fine for one image, fails for a batch
        nodes = [
            helper.make_node("Shape", ["conv"], ["hw"], start=2),
            helper.make_node("Concat", ["one_c", "hw"], ["one_shape"], axis=0),
            helper.make_node("Reshape", ["conv", "one_shape"], ["logits"]),
        ]
        return nodes, [numpy_helper.from_array(np.array([1, len(CLASSES)], np.int64), "one_c")]
    if tail == "allocates-40gb":  # logits = conv + max(zeros(N, 4, 50000, 50000)): 40 GB per image at run time
        zero = helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0])
        nodes = [
            helper.make_node("Shape", ["image"], ["n"], start=0, end=1),
            helper.make_node("Concat", ["n", "huge_dims"], ["huge_shape"], axis=0),
            helper.make_node("ConstantOfShape", ["huge_shape"], ["huge"], value=zero),
            helper.make_node("ReduceMax", ["huge"], ["huge_max"], keepdims=1),
            helper.make_node("Add", ["conv", "huge_max"], ["logits"]),
        ]
        return nodes, [numpy_helper.from_array(np.array([4, 50_000, 50_000], np.int64), "huge_dims")]
    if tail == "unknown-op":  # logits = tseg.harness.Mystery(conv): an op no engine has
        return [helper.make_node("Mystery", ["conv"], ["logits"], domain="tseg.harness")], []
    raise ValueError(f"unknown tail {tail!r}")


def tail_model_bytes(tail: str, *, props: Mapping[str, str] | None = None) -> bytes:
    """A 1x1-conv model (four classes) whose output goes through a misbehaving tail.

    Args:
        tail: "batch-one" (a Reshape that only a batch of one image passes: tseg's batch fails
            and is retried image by image, which succeeds), "allocates-40gb" (ONNX Runtime
            refuses to run it: it would allocate 40 GB per image) or "unknown-op" (an op of a
            domain no engine knows: neither ONNX Runtime nor OpenVINO can read the model).
        props: metadata_props (default: valid tseg metadata).
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.normal(size=(len(CLASSES), 3, 1, 1)).astype(np.float32)
    bias = np.zeros(len(CLASSES), np.float32)
    nodes, initializers = _tail_nodes(tail)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["conv"]), *nodes],
        f"tail_{tail.replace('-', '_')}",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES), "H", "W"])],
        initializer=[numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias"), *initializers],
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("tseg.harness", 1)]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="tseg-harness")
    model.ir_version = 9
    for key, value in (metadata_props() if props is None else props).items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def external_data_model(location: str) -> tuple[bytes, bytes]:
    """(model bytes, weight bytes): the valid 1x1-conv model with its weight stored outside it.

    The model says its weight lies at ``location`` (relative to the model's folder, as ONNX
    external data is), e.g. ``../weights.bin``; the caller writes the weight bytes there.
    """
    import onnx
    from onnx import TensorProto, numpy_helper

    model = onnx.load_from_string(conv_model_bytes(props=metadata_props()))
    weight = next(t for t in model.graph.initializer if t.name == "weight")
    data = numpy_helper.to_array(weight).astype(np.float32).tobytes()
    weight.ClearField("float_data")
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(len(data)))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString(), data
