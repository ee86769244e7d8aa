"""FP16 and INT8 files (export.fp16, export.int8): they load and run, keep I/O and metadata, refuse bad input."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from hypothesis import given
from hypothesis import strategies as st
from onnx import TensorProto

from tseg.export import int8 as int8_module
from tseg.export.calibration import calibration_images, calibration_indices
from tseg.export.fp16 import convert_fp16
from tseg.export.int8 import CALIB_METHODS, DEFAULT_CALIB_METHOD, DEFAULT_KEEP_FLOAT, quantize_int8
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess
from tseg.runtime.model.metadata import ModelMetadata

PROPS = {"tseg.precision": '"int8"', "tseg.calibration": '{"images": 4}', "extra.key": "on top"}


def _props(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def _meta(path) -> ModelMetadata:
    return ModelMetadata.from_props(_props(path))


def _calibration(coco_dir, onnx_path, count=4):
    meta = _meta(onnx_path)
    return calibration_images(
        CocoDataset(coco_dir / "train.json"), count=count, size=meta.input_size, mean=meta.mean, std=meta.std
    )


def _val_batch(coco_dir, onnx_path, size):
    """The val images preprocessed at ``size``: (N, 3, h, w) float32."""
    meta = _meta(onnx_path)
    coco = CocoDataset(coco_dir / "val.json")
    images = [preprocess(coco.read_image(i), size=size, mean=meta.mean, std=meta.std) for i in range(len(coco))]
    return np.stack(images[:2])


def _run(path, batch):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: batch})[0]


@pytest.fixture()
def fp16_file(tiny_export):
    """tseg-export's FP16 file of the tiny model (shared, read-only)."""
    return tiny_export.fp16


@pytest.fixture()
def int8_file(tiny_export):
    """tseg-export's INT8 file (4 calibration images, the default method and keep_float; shared, read-only)."""
    return tiny_export.int8


def test_fp16_has_float32_io_float16_weights_and_the_sources_metadata(fp16_file, tiny_onnx):
    proto = onnx.load(str(fp16_file))
    for value in [*proto.graph.input, *proto.graph.output]:
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    conv_weights = {node.input[1] for node in proto.graph.node if node.op_type == "Conv"}
    types = {init.name: init.data_type for init in proto.graph.initializer}
    assert conv_weights and all(types[name] == TensorProto.FLOAT16 for name in conv_weights)
    props, source = _props(fp16_file), _props(tiny_onnx)
    assert _meta(fp16_file).precision == "fp16" and _meta(tiny_onnx).precision == "fp32"
    assert {k: v for k, v in props.items() if k != "tseg.precision"} == {
        k: v for k, v in source.items() if k != "tseg.precision"
    }


@pytest.mark.parametrize("size", [(32, 32), (48, 40)])
def test_fp16_logits_match_fp32_on_val_images(fp16_file, tiny_onnx, tiny_coco_dir, size):
    batch = _val_batch(tiny_coco_dir, tiny_onnx, size)
    full, half = _run(tiny_onnx, batch), _run(fp16_file, batch)
    assert half.dtype == np.float32 and half.shape == full.shape == (2, 4, *size)
    assert (full.argmax(1) == half.argmax(1)).mean() >= 0.99
    assert np.abs(full - half).max() <= 0.02 * max(1.0, np.abs(full).max())


def test_int8_is_qdq_runs_and_carries_its_calibration_over_the_sources_metadata(int8_file, tiny_onnx, tiny_coco_dir):
    ops = collections.Counter(node.op_type for node in onnx.load(str(int8_file)).graph.node)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    batch = _val_batch(tiny_coco_dir, tiny_onnx, (40, 48))
    full, quant = _run(tiny_onnx, batch), _run(int8_file, batch)
    assert quant.dtype == np.float32 and quant.shape == full.shape == (2, 4, 40, 48)
    assert (full.argmax(1) == quant.argmax(1)).mean() >= 0.8
    props, source = _props(int8_file), _props(tiny_onnx)
    changed = {k for k in props if props[k] != source.get(k)}
    assert changed == {"tseg.precision", "tseg.calibration"} and set(source) <= set(props)
    assert _meta(int8_file).precision == "int8" and _meta(int8_file).calibration["images"] == 4
    assert _meta(int8_file).classes == _meta(tiny_onnx).classes


def _quantized_convs(path) -> dict[str, bool]:
    """Conv node name -> whether its weight comes through a DequantizeLinear (is quantized)."""
    graph = onnx.load(str(path)).graph
    producer = {out: node.op_type for node in graph.node for out in node.output}
    return {n.name: producer.get(n.input[1]) == "DequantizeLinear" for n in graph.node if n.op_type == "Conv"}


@pytest.mark.parametrize("method", [m for m in CALIB_METHODS if m != DEFAULT_CALIB_METHOD])
def test_each_calibration_method_quantizes(method, tiny_onnx, tiny_coco_dir, tmp_path):
    dst = tmp_path / "m.int8.onnx"
    quantize_int8(tiny_onnx, dst, calibration=_calibration(tiny_coco_dir, tiny_onnx, 2), method=method, props={})
    assert any(_quantized_convs(dst).values())
    assert _run(dst, _val_batch(tiny_coco_dir, tiny_onnx, (32, 32))).shape == (2, 4, 32, 32)


def test_default_keeps_hardswish_convs_float_and_quantizes_relu_convs(int8_file, tiny_onnx):
    graph = onnx.load(str(tiny_onnx)).graph
    readers = collections.defaultdict(set)
    for node in graph.node:
        for name in node.input:
            readers[name].add(node.op_type)
    quantized = _quantized_convs(int8_file)
    feeds = {n.name: readers[n.output[0]] for n in graph.node if n.op_type == "Conv"}
    hard = [name for name, ops in feeds.items() if ops and ops <= {"HardSigmoid", "HardSwish", "Mul"}]
    relu = [name for name, ops in feeds.items() if "Relu" in ops]
    assert hard and relu
    assert not any(quantized[name] for name in hard)
    assert all(quantized[name] for name in relu)


def test_keep_float_by_op_type_and_node_name(tiny_onnx, tiny_coco_dir, int8_file, tmp_path):
    quantized = _quantized_convs(int8_file)
    name = next(n for n, q in quantized.items() if q)
    by_name = tmp_path / "name.onnx"
    calibration = _calibration(tiny_coco_dir, tiny_onnx, 2)
    keep = (*DEFAULT_KEEP_FLOAT, name)
    quantize_int8(tiny_onnx, by_name, calibration=calibration, method="minmax", keep_float=keep, props={})
    after = _quantized_convs(by_name)
    assert not after[name] and sum(after.values()) == sum(quantized.values()) - 1
    by_type = tmp_path / "type.onnx"
    calibration = _calibration(tiny_coco_dir, tiny_onnx, 2)
    quantize_int8(tiny_onnx, by_type, calibration=calibration, method="minmax", keep_float=("Conv",), props={})
    assert not any(_quantized_convs(by_type).values())


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"method": "kl"}, ["kl", "minmax, entropy, percentile"]),
        ({"calibration": []}, ["at least 1 image"]),
        ({"keep_float": ("Cnv",)}, ["'Cnv'", "Conv"]),
        ({"keep_float": "Conv"}, ["a list", "'Conv'"]),
        ({"calibration": [np.zeros((32, 32, 3), np.float32)]}, ["(3, H, W)", "(32, 32, 3)"]),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(kwargs, words, tiny_onnx, tmp_path):
    dst = tmp_path / "out" / "m.int8.onnx"
    args = {"calibration": [np.zeros((3, 32, 32), np.float32)], "method": "minmax", "props": {}, **kwargs}
    with pytest.raises(TsegError) as info:
        quantize_int8(tiny_onnx, dst, **args)
    message = str(info.value)
    assert "\n" not in message and all(word in message for word in words), message
    assert not dst.parent.exists() or not any(dst.parent.iterdir())


def test_missing_source_is_one_line(tmp_path):
    with pytest.raises(TsegError, match="not found"):
        convert_fp16(tmp_path / "none.onnx", tmp_path / "x.onnx", props={})


def test_props_go_on_top_and_nothing_is_written_beside_dst_or_src(tiny_onnx, tiny_coco_dir, tmp_path):
    source_folder = sorted(p.name for p in tiny_onnx.parent.iterdir())
    out = tmp_path / "out"
    calibration = _calibration(tiny_coco_dir, tiny_onnx, 2)
    int8 = quantize_int8(tiny_onnx, out / "m.int8.onnx", calibration=calibration, method="entropy", props=PROPS)
    fp16 = convert_fp16(tiny_onnx, out / "m.fp16.onnx", props={"tseg.precision": '"fp16"', "extra.key": "on top"})
    assert sorted(p.name for p in out.iterdir()) == ["m.fp16.onnx", "m.int8.onnx"]
    assert sorted(p.name for p in tiny_onnx.parent.iterdir()) == source_folder
    source = _props(tiny_onnx)
    assert _props(int8) == {**source, **PROPS}
    assert _props(fp16) == {**source, "tseg.precision": '"fp16"', "extra.key": "on top"}


def test_calibration_images_are_the_runtimes_preprocessing(tiny_coco_dir):
    coco = CocoDataset(tiny_coco_dir / "train.json")
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    images = list(calibration_images(coco, count=4, size=(24, 40), mean=mean, std=std, seed=3))
    indices = calibration_indices(len(coco), count=4, seed=3)
    assert len(images) == 4 and len(set(indices)) == 4
    for image, index in zip(images, indices, strict=True):
        expected = preprocess(coco.read_image(index), size=(24, 40), mean=mean, std=std)
        assert image.dtype == np.float32 and image.shape == (3, 24, 40)
        np.testing.assert_array_equal(image, expected)
    assert len(list(calibration_images(coco, count=100, size=(8, 8), mean=mean, std=std))) == len(coco)


@pytest.mark.parametrize("count", [0, -1, 2.5, True])
def test_calibration_count_must_be_positive(tiny_coco_dir, count):
    coco = CocoDataset(tiny_coco_dir / "train.json")
    with pytest.raises(TsegError, match="positive integer"):
        calibration_images(coco, count=count, size=(8, 8), mean=(0, 0, 0), std=(1, 1, 1))


@given(total=st.integers(1, 5000), count=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_calibration_indices_are_distinct_and_spread(total, count, seed):
    indices = calibration_indices(total, count=count, seed=seed)
    take = min(total, count)
    assert len(indices) == take and indices == sorted(set(indices))
    assert 0 <= indices[0] and indices[-1] < total
    stride = total / take
    assert all(int(k * stride) <= index < int((k + 1) * stride) + 1 for k, index in enumerate(indices))
    assert calibration_indices(total, count=count, seed=seed) == indices


def test_plan_keeps_a_conv_float_only_when_all_its_readers_are_float():
    from onnx import helper

    def conv(name, src, dst):
        return helper.make_node("Conv", [src, "w"], [dst], name=name)

    graph = helper.make_graph(
        [
            conv("c1", "x", "a"),
            helper.make_node("Relu", ["a"], ["b"], name="r"),
            conv("c2", "b", "c"),
            helper.make_node("HardSigmoid", ["c"], ["d"], name="hs"),
            helper.make_node("Mul", ["c", "d"], ["e"], name="m"),
            conv("c3", "e", "f"),
            helper.make_node("Add", ["f", "e"], ["g"], name="add"),
            conv("c4", "g", "y"),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])],
    )
    op_types, exclude = int8_module.plan(graph, keep_op_types={"Mul", "HardSigmoid"}, keep_nodes={"add"})
    assert "Conv" in op_types and "Mul" not in op_types
    assert exclude == ["add", "c2", "c3"]  # c1 feeds Relu (int8); c4 makes the graph output


def _activation_zero_points(path) -> list[np.ndarray]:
    """The zero points of the QuantizeLinear nodes (activations; weights are stored quantized)."""
    proto = onnx.load(str(path))
    values = {init.name: onnx.numpy_helper.to_array(init) for init in proto.graph.initializer}
    return [values[node.input[2]] for node in proto.graph.node if node.op_type == "QuantizeLinear"]


def test_the_cpu_and_tensorrt_targets_differ_in_their_activation_types(int8_file, tiny_onnx, tiny_coco_dir, tmp_path):
    from tseg.export.int8 import TENSORRT_INT8

    cpu = _activation_zero_points(int8_file)
    assert cpu and all(z.dtype == np.uint8 for z in cpu)  # u8 activations: x86's fused QLinearConv path
    calibration = _calibration(tiny_coco_dir, tiny_onnx, count=2)
    trt = quantize_int8(tiny_onnx, tmp_path / "trt.int8.onnx", calibration=calibration, method="minmax",
                        props=PROPS, settings=TENSORRT_INT8)
    zero_points = _activation_zero_points(trt)
    # TensorRT takes signed, symmetric int8 activations only: every zero point 0.
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert _run(trt, _val_batch(tiny_coco_dir, tiny_onnx, (32, 32))).shape == (2, 4, 32, 32)
