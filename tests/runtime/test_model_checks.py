"""A model is checked completely when it is opened: its tseg metadata and its graph.

Bad metadata (types, ranges, JSON Python cannot parse, a newer schema) and a graph
that does not fit it (input rank/channels/type, output rank, a channel count other
than the class count) are one TsegError naming the model file, never a TypeError,
KeyError or OverflowError, and never a wrong label map later.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from tests.conv_models import conv_model, metadata, model_with_props, save_model
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import PREFIX, ModelMetadata, as_rgb_triples
from tseg.runtime.segment.segmenter import Segmenter

# ----------------------------------------------------------------------------- metadata


def test_metadata_round_trips_and_normalises_to_tuples_of_python_numbers():
    meta = metadata(palette=[[0, 0, 0], [255, 0, 0], [0, 255, np.int64(7)]], mean=[0, 0.5, 1], input_size=[8, 12])
    assert meta.palette == ((0, 0, 0), (255, 0, 0), (0, 255, 7)) and type(meta.palette[2][2]) is int
    assert meta.mean == (0.0, 0.5, 1.0) and all(type(v) is float for v in meta.mean)
    assert meta.input_size == (8, 12)
    assert ModelMetadata.from_props(meta.to_props()) == meta


BAD_PROPS = [
    ("palette", "5", "tseg.palette"),
    ("palette", "[[0,0,0],[1,2,3]]", "one palette colour per class (3)"),
    ("palette", "[[0,0,0],[1.5,2,3],[0,0,0]]", "tseg.palette"),
    ("palette", "[[0,0,0],[true,2,3],[0,0,0]]", "tseg.palette"),
    ("palette", '[[0,0,0],["1",2,3],[0,0,0]]', "tseg.palette"),
    ("palette", "[[0,0,0],[256,2,3],[0,0,0]]", "tseg.palette"),
    ("palette", "[[0,0,0],[1,2],[0,0,0]]", "tseg.palette"),
    ("palette", '"abc"', "tseg.palette"),
    ("classes", '"abc"', "tseg.classes"),
    ("classes", '["bg"]', "tseg.classes"),
    ("classes", json.dumps([f"c{i}" for i in range(256)]), "2 to 255"),
    ("classes", '["bg", "a", "a"]', "more than once"),
    ("classes", '["bg", "", "b"]', "tseg.classes"),
    ("classes", '["bg", 5, "b"]', "tseg.classes"),
    ("classes", '["bg", "a\\nb", "c"]', "printable"),
    ("classes", "null", "tseg.classes"),
    ("mean", '["x", 1, 2]', "tseg.mean"),
    ("mean", "[0.5, 0.5]", "tseg.mean"),
    ("mean", "[NaN, 0.5, 0.5]", "tseg.mean"),
    ("mean", "[1e400, 0.5, 0.5]", "tseg.mean"),
    ("mean", "[1" + "0" * 400 + ", 0.5, 0.5]", "tseg.mean"),
    ("mean", "0.5", "tseg.mean"),
    ("std", "[0.2, 0, 0.2]", "tseg.std"),
    ("std", "[0.2, -1, 0.2]", "tseg.std"),
    ("std", "[Infinity, 1, 1]", "tseg.std"),
    ("std", "[true, 1, 1]", "tseg.std"),
    ("input_size", "[1e400, 3]", "tseg.input_size"),
    ("input_size", "[8.5, 12]", "tseg.input_size"),
    ("input_size", "[0, 12]", "tseg.input_size"),
    ("input_size", "[100000, 12]", "tseg.input_size"),
    ("input_size", "[8, 12, 3]", "tseg.input_size"),
    ("input_size", "[" + "9" * 5000 + ", 3]", "tseg.input_size"),
    ("input_size", '{"h": 8}', "tseg.input_size"),
    ("model_name", "5", "tseg.model_name"),
    ("tseg_version", "[1]", "tseg.tseg_version"),
    ("extra", "[1, 2]", "tseg.extra"),
    ("extra", "[" * 100000 + "]" * 100000, "nested too deeply"),
    ("classes", "[not json", "malformed JSON"),
    ("schema", "2", "upgrade tseg"),
    ("schema", "one", "tseg.schema"),
    ("schema", "0", "tseg.schema"),
    ("mean", None, "missing tseg.mean"),
    ("schema", None, "missing tseg.schema"),
]


@pytest.mark.parametrize(("key", "raw", "message"), BAD_PROPS)
def test_bad_metadata_is_one_line_naming_the_model_and_key(key, raw, message):
    props = metadata().to_props()
    if raw is None:
        props.pop(PREFIX + key)
    else:
        props[PREFIX + key] = raw
    with pytest.raises(TsegError) as caught:
        ModelMetadata.from_props(props, source="model.onnx")
    text = str(caught.value)
    assert message in text and "model.onnx" in text
    assert "\n" not in text and len(text) < 600


def test_construction_checks_types_not_only_lengths():
    with pytest.raises(TsegError, match="std"):
        metadata(std=(0.2, float("nan"), 0.2))
    with pytest.raises(TsegError, match="palette"):
        metadata(palette=((0, 0, 0), (1, 2, 3), (4, 5, "6")))
    with pytest.raises(TsegError, match="extra"):
        metadata(extra=[("a", 1)])
    with pytest.raises(TsegError, match="palette"):
        as_rgb_triples([(0, 0, 0), (1.5, 0, 0)])
    assert as_rgb_triples([[1, 2, 3]]) == ((1, 2, 3),)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(["classes", "palette", "mean", "std", "input_size", "model_name", "extra"]), value=JSON)
def test_any_json_value_is_accepted_checked_or_refused_with_a_tseg_error(key, value):
    props = metadata().to_props()
    props[PREFIX + key] = json.dumps(value)
    try:
        meta = ModelMetadata.from_props(props, source="m.onnx")
    except TsegError as err:
        assert str(err).startswith("m.onnx: bad tseg metadata tseg." + key)
        return
    # Accepted: then every invariant the runtime relies on holds.
    assert 2 <= len(meta.classes) <= 256 and len(set(meta.classes)) == len(meta.classes)
    assert len(meta.palette) == len(meta.classes)
    assert all(type(c) is int and 0 <= c <= 255 for rgb in meta.palette for c in rgb)
    assert all(np.isfinite(meta.mean)) and all(np.isfinite(meta.std)) and min(meta.std) > 0
    assert all(type(v) is int and 1 <= v <= 8192 for v in meta.input_size)


# ----------------------------------------------------------------------------- opening a model


def test_a_good_model_opens_and_segments(tmp_path):
    segmenter = Segmenter(conv_model(tmp_path / "m.onnx"), device="cpu")
    image = np.full((5, 7, 3), 60, np.uint8)
    image[:, 4:, 1] = 250  # green on the right
    labels = segmenter.predict(image).labels
    assert labels.shape == (5, 7)
    assert (labels[:, :3] == 0).all() and (labels[:, 5:] == 2).all()


@pytest.mark.parametrize(("key", "raw", "message"), BAD_PROPS[:: len(BAD_PROPS) // 12])
def test_segmenter_refuses_a_model_file_with_bad_metadata(tmp_path, key, raw, message):
    path = model_with_props(tmp_path / "bad.onnx", **{key: raw})
    with pytest.raises(TsegError, match="bad.onnx") as caught:
        Segmenter(path, device="cpu")
    assert message in str(caught.value)


def test_an_onnx_file_without_tseg_metadata_is_refused(tmp_path):
    with pytest.raises(TsegError, match="has no tseg metadata.*tseg-export"):
        Segmenter(conv_model(tmp_path / "plain.onnx", props={}), device="cpu")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tseg.palette": "[[0, 0, 0]]"}, "one palette colour per class"),
        ({"tseg.std": "[0.2, 0.0, 0.2]"}, "tseg.std"),
        ({"tseg.schema": "99"}, "upgrade tseg"),
    ],
)
def test_an_exported_model_with_edited_metadata_is_refused(tiny_onnx, tmp_path, change, message):
    model = onnx.load(str(tiny_onnx))
    for prop in model.metadata_props:
        if prop.key in change:
            prop.value = change[prop.key]
    copy = tmp_path / "edited.onnx"
    onnx.save(model, str(copy))
    with pytest.raises(TsegError, match="edited.onnx") as caught:
        Segmenter(copy, device="cpu")
    assert message in str(caught.value)
    Segmenter(tiny_onnx, device="cpu")  # the original is fine


def _graph(nodes, inputs, outputs, initializers=()):
    return helper.make_graph(nodes, "g", inputs, outputs, list(initializers))


def _weights(out_channels=3, in_channels=3):
    return [
        numpy_helper.from_array(np.ones((out_channels, in_channels, 1, 1), np.float32), "w"),
        numpy_helper.from_array(np.zeros(out_channels, np.float32), "b"),
    ]


def _value(name, shape, kind=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, kind, shape)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda p: conv_model(p, out_channels=5), r"output .*need channels 3, the graph has 5"),
        (lambda p: conv_model(p, out_channels=2), r"need channels 3, the graph has 2"),
        (lambda p: conv_model(p, in_channels=1), r"input: need channels 3, the graph has 1"),
        (lambda p: conv_model(p, input_shape=[2, 3, "H", "W"]), r"need batch 1, the graph has 2"),
        (lambda p: conv_model(p, input_shape=[1, 3, 16, 16], output_shape=[1, 3, 16, 16]), "need height 8"),
        (
            lambda p: save_model(
                p,
                _graph(
                    [helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
                     helper.make_node("Conv", ["f", "w", "b"], ["logits"])],
                    [_value("image", ["N", 3, "H", "W"], TensorProto.INT64)],
                    [_value("logits", ["N", 3, "H", "W"])],
                    _weights(),
                ),
                metadata().to_props(),
            ),
            r"need a tensor\(float\) input, got tensor\(int64\)",
        ),
        (
            lambda p: save_model(
                p,
                _graph(
                    [helper.make_node("Unsqueeze", ["image", "axes"], ["x"]),
                     helper.make_node("Conv", ["x", "w", "b"], ["logits"])],
                    [_value("image", [3, "H", "W"])],
                    [_value("logits", [1, 3, "H", "W"])],
                    [*_weights(), numpy_helper.from_array(np.array([0], np.int64), "axes")],
                ),
                metadata().to_props(),
            ),
            "need a rank-4 input",
        ),
        (
            lambda p: save_model(
                p,
                _graph(
                    [helper.make_node("Conv", ["image", "w", "b"], ["s"]),
                     helper.make_node("ReduceMax", ["s"], ["logits"], axes=[1], keepdims=0)],
                    [_value("image", ["N", 3, "H", "W"])],
                    [_value("logits", ["N", "H", "W"])],
                    _weights(),
                ),
                metadata().to_props(),
            ),
            "need a rank-4 output",
        ),
        (
            lambda p: save_model(
                p,
                _graph(
                    [helper.make_node("Conv", ["image", "w", "b"], ["logits"]),
                     helper.make_node("Identity", ["image"], ["other"])],
                    [_value("image", ["N", 3, "H", "W"]), _value("extra", ["N"])],
                    [_value("logits", ["N", 3, "H", "W"])],
                    _weights(),
                ),
                metadata().to_props(),
            ),
            "one input",
        ),
    ],
)
def test_a_graph_that_does_not_fit_its_metadata_is_refused_when_opened(tmp_path, build, message):
    path = build(tmp_path / "graph.onnx")
    with pytest.raises(TsegError, match=message) as caught:
        Segmenter(path, device="cpu")
    assert "graph.onnx" in str(caught.value)


def test_a_class_count_the_graph_hides_is_caught_on_the_first_run(tmp_path):
    # Five score channels sliced to min(5, input height): no static channel count to check at opening.
    graph = _graph(
        [
            helper.make_node("Conv", ["image", "w", "b"], ["s"]),
            helper.make_node("Shape", ["image"], ["h"], start=2, end=3),
            helper.make_node("Slice", ["s", "zero", "h", "axis"], ["logits"]),
        ],
        [_value("image", ["N", 3, "H", "W"])],
        [_value("logits", ["N", "C", "H", "W"])],
        [
            *_weights(out_channels=5),
            numpy_helper.from_array(np.array([0], np.int64), "zero"),
            numpy_helper.from_array(np.array([1], np.int64), "axis"),
        ],
    )
    segmenter = Segmenter(save_model(tmp_path / "hidden.onnx", graph, metadata().to_props()), device="cpu")
    assert not isinstance(segmenter.session.get_outputs()[0].shape[1], int)
    with pytest.raises(TsegError, match=r"need \(1, 3, h, w\) float scores .* gave \(1, 5, 8, 12\)"):
        segmenter.predict(np.zeros((4, 4, 3), np.uint8))


def test_non_finite_scores_and_run_failures_are_one_line(tmp_path):
    nan = numpy_helper.from_array(np.array(np.nan, np.float32), "nan")
    graph = _graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["s"]), helper.make_node("Mul", ["s", "nan"], ["logits"])],
        [_value("image", ["N", 3, "H", "W"])],
        [_value("logits", ["N", 3, "H", "W"])],
        [*_weights(), nan],
    )
    segmenter = Segmenter(save_model(tmp_path / "nan.onnx", graph, metadata().to_props()), device="cpu")
    with pytest.raises(TsegError, match="NaN or infinite scores"):
        segmenter.scores(np.zeros((4, 4, 3), np.uint8))
    # A reshape that cannot hold for the input the runtime feeds: ONNX Runtime's error becomes a TsegError.
    shape = numpy_helper.from_array(np.array([1, 3, 7, 7], np.int64), "shape")
    graph = _graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["s"]), helper.make_node("Reshape", ["s", "shape"], ["logits"])],
        [_value("image", ["N", 3, "H", "W"])],
        [_value("logits", ["N", 3, "H", "W"])],
        [*_weights(), shape],
    )
    segmenter = Segmenter(save_model(tmp_path / "reshape.onnx", graph, metadata().to_props()), device="cpu")
    with pytest.raises(TsegError, match=r"reshape.onnx failed on an input of shape \(1, 3, 8, 12\)"):
        segmenter.predict(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(
    "image",
    [np.zeros((0, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), [[1, 2, 3]]],
    ids=["empty", "2d", "float", "list"],
)
def test_bad_image_arrays_are_refused(tmp_path, image):
    segmenter = Segmenter(conv_model(tmp_path / "m.onnx"), device="cpu")
    with pytest.raises(TsegError, match="image"):
        segmenter.logits(image)


def test_a_file_that_is_not_onnx_is_one_line(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(TsegError, match="junk.onnx is not a loadable ONNX model"):
        Segmenter(junk, device="cpu")
    with pytest.raises(TsegError, match="model file not found"):
        Segmenter(tmp_path / "missing.onnx", device="cpu")
    with pytest.raises(TsegError, match="is a folder, not a file"):
        Segmenter(tmp_path, device="cpu")


def test_the_model_file_is_not_changed_by_opening_it(tmp_path):
    path = conv_model(tmp_path / "m.onnx")
    copy = shutil.copy(path, tmp_path / "copy.onnx")
    Segmenter(path, device="cpu").predict(np.zeros((3, 3, 3), np.uint8))
    assert path.read_bytes() == Path(copy).read_bytes()
