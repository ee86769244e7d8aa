"""tseg.export.triton: a Triton model repository, checked against Triton's own ModelConfig schema."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from hypothesis import given, settings
from hypothesis import strategies as st
from tritonclient.grpc import model_config_pb2  # the dev extra ships Triton's schema, as it ships pytest

from tests.onnx_models import build_colour_model, colour_metadata, write_colour_model
from tseg.export import triton
from tseg.export.triton import write_triton_model
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import ModelMetadata


def parse_config(folder: Path):
    """config.pbtxt through Triton's schema: an unknown or misspelt field raises ParseError."""
    return text_format.Parse((folder / "config.pbtxt").read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every path under ``folder`` (folders as None, files as their bytes)."""
    if folder.is_file():
        return {".": folder.read_bytes()}
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def file_metadata(path: Path) -> ModelMetadata:
    proto = onnx.load(str(path), load_external_data=False)
    return ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})


def test_repository_of_the_exported_model(tiny_onnx, tmp_path):
    repo = tmp_path / "new" / "repo"  # missing parents are created
    folder = write_triton_model(tiny_onnx, repo, name="tiny")
    assert folder == repo / "tiny"
    assert sorted(str(p.relative_to(repo)) for p in repo.rglob("*")) == [
        "tiny", "tiny/1", "tiny/1/model.onnx", "tiny/config.pbtxt", "tiny/labels.txt"]
    assert (folder / "1" / "model.onnx").read_bytes() == tiny_onnx.read_bytes()

    config = parse_config(folder)
    assert config.name == "tiny" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 8
    (image,), (logits,) = config.input, config.output
    assert (image.name, image.data_type, list(image.dims)) == ("image", model_config_pb2.TYPE_FP32, [3, -1, -1])
    assert (logits.name, logits.data_type, list(logits.dims)) == ("logits", model_config_pb2.TYPE_FP32, [4, -1, -1])
    assert config.dynamic_batching.max_queue_delay_microseconds == triton.MAX_QUEUE_DELAY_US > 0
    (group,) = config.instance_group
    assert (group.kind, group.count) == (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)
    assert not config.HasField("optimization"), "no TensorRT block unless asked for"

    meta = file_metadata(tiny_onnx)
    assert logits.label_filename == "labels.txt"
    assert (folder / "labels.txt").read_text(encoding="utf-8").splitlines() == list(meta.classes)
    params = {key: value.string_value for key, value in config.parameters.items()}
    assert ModelMetadata.from_props(params) == meta, "a client can preprocess from the config alone"
    assert json.loads(params["tseg.mean"]) == pytest.approx(meta.mean)
    assert json.loads(params["tseg.input_size"]) == [32, 32] and json.loads(params["tseg.precision"]) == "fp32"


def test_tensorrt_fp16_accelerator(tiny_onnx, tmp_path):
    config = parse_config(write_triton_model(tiny_onnx, tmp_path / "repo", tensorrt_fp16=True))
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert dict(accelerator.parameters) == {
        "precision_mode": "FP16",  # one optimisation profile: batch 1..max_batch_size at the model's input size
        "trt_profile_min_shapes": "image:1x3x32x32",
        "trt_profile_opt_shapes": "image:8x3x32x32",
        "trt_profile_max_shapes": "image:8x3x32x32",
    }
    assert not config.optimization.execution_accelerators.cpu_execution_accelerator


def test_tensorrt_profile_follows_static_dims_and_unbatched_models(tmp_path):
    proto = build_colour_model()  # metadata input size (24, 40)
    proto.graph.input[0].type.tensor_type.shape.dim[3].dim_value = 48
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    config = parse_config(write_triton_model(path, tmp_path / "repo", max_batch_size=0, tensorrt_fp16=True))
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.parameters["trt_profile_min_shapes"] == "image:1x3x24x48"
    assert accelerator.parameters["trt_profile_max_shapes"] == "image:1x3x24x48"


def test_default_name_and_a_second_model_in_the_same_repo(tmp_path):
    repo = tmp_path / "repo"
    first = write_colour_model(tmp_path / "models" / "best.onnx")
    second = write_colour_model(tmp_path / "models" / "best.int8.onnx")
    assert write_triton_model(first, repo) == repo / "best"
    before = snapshot(repo / "best")
    assert write_triton_model(second, repo) == repo / "best_int8"
    assert parse_config(repo / "best_int8").name == "best_int8"
    assert snapshot(repo / "best") == before, "the first model is left as it was"
    assert sorted(p.name for p in repo.iterdir()) == ["best", "best_int8"]


def test_cpu_instances_and_no_batching(tmp_path):
    model = write_colour_model(tmp_path / "m.onnx")
    config = parse_config(write_triton_model(model, tmp_path / "repo", device="cpu", max_batch_size=0))
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [-1, 3, -1, -1], "without batching the dims keep the batch axis"
    assert list(config.output[0].dims) == [-1, 4, -1, -1]
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    config = parse_config(write_triton_model(model, tmp_path / "repo", name="auto", device="auto"))
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_AUTO


def test_static_graph_dims_are_kept(tmp_path):
    proto = build_colour_model()
    for value in (proto.graph.input[0], proto.graph.output[0]):
        for axis, size in ((0, 1), (2, 24), (3, 40)):
            value.type.tensor_type.shape.dim[axis].dim_value = size
    path = tmp_path / "static.onnx"
    onnx.save(proto, str(path))
    config = parse_config(write_triton_model(path, tmp_path / "repo", max_batch_size=0))
    assert list(config.input[0].dims) == [1, 3, 24, 40] and list(config.output[0].dims) == [1, 4, 24, 40]
    with pytest.raises(TsegError, match="batch axis is fixed at 1"):
        write_triton_model(path, tmp_path / "repo", name="batched", max_batch_size=8)


def test_config_is_deterministic(tmp_path):
    model = write_colour_model(tmp_path / "m.onnx")
    texts = [(write_triton_model(model, tmp_path / f"repo{i}", tensorrt_fp16=True) / "config.pbtxt").read_bytes()
             for i in range(2)]
    assert texts[0] == texts[1]


def test_names_and_metadata_with_quotes_and_non_ascii_survive(tmp_path):
    classes = ('back "ground"', "Metall\\Blech", "Papier grün", "玻璃")
    model = write_colour_model(tmp_path / "m.onnx", colour_metadata(classes=classes))
    folder = write_triton_model(model, tmp_path / "repo", name="colour.v1-2")
    config = parse_config(folder)
    params = {key: value.string_value for key, value in config.parameters.items()}
    assert ModelMetadata.from_props(params).classes == classes
    assert (folder / "labels.txt").read_text(encoding="utf-8").splitlines() == list(classes)
    assert config.name == "colour.v1-2"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_quoted_strings_parse_back(text):
    parsed = text_format.Parse(f"platform: {triton._quote(text)}", model_config_pb2.ModelConfig())
    assert parsed.platform == text


def test_the_repository_runs_as_configured(tiny_onnx, tmp_path):
    """ONNX Runtime runs model.onnx with a batch of 2 shaped as config.pbtxt says, by the config's names."""
    import onnxruntime as ort

    folder = write_triton_model(tiny_onnx, tmp_path / "repo", max_batch_size=4)
    config = parse_config(folder)
    params = {key: value.string_value for key, value in config.parameters.items()}
    height, width = json.loads(params["tseg.input_size"])
    dims = [height if d == -1 and i == 1 else width if d == -1 else d for i, d in enumerate(config.input[0].dims)]
    batch = np.random.default_rng(0).standard_normal((2, *dims)).astype(np.float32)
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (out,) = session.run([config.output[0].name], {config.input[0].name: batch})
    assert out.dtype == np.float32 and out.shape == (2, config.output[0].dims[0], height, width)


def test_refusals_leave_the_repo_untouched(tmp_path):
    model = write_colour_model(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    write_triton_model(model, repo, name="m")
    (repo / "m" / "1" / "model.onnx").write_bytes(b"user's own weights")
    before = snapshot(repo)
    with pytest.raises(TsegError, match=r"already has a model 'm'.*never overwritten"):
        write_triton_model(model, repo, name="m")
    assert snapshot(repo) == before


@pytest.mark.parametrize("content", ["file", "other", "folder without config", "hidden"])
def test_a_folder_that_is_not_a_triton_repo_is_refused(tmp_path, content):
    model = write_colour_model(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    if content == "file":
        repo.write_text("not a folder")
        match = "is a file"
    else:
        repo.mkdir()
        write_triton_model(model, repo, name="ok")
        users = {"other": repo / "notes.txt", "hidden": repo / ".DS_Store", "folder without config": repo / "x" / "y"}
        users[content].parent.mkdir(exist_ok=True)
        users[content].write_text("mine")
        match = "holds other content"
    before = snapshot(repo)
    with pytest.raises(TsegError, match=match) as err:
        write_triton_model(model, repo, name="new")
    assert str(repo) in str(err.value) and "\n" not in str(err.value)
    assert snapshot(repo) == before


@pytest.mark.parametrize("name", ["", "a/b", "..", ".", ".hidden", "-x", "a b", "x" * 129, "é", "a\nb", 7])
def test_bad_model_names(tmp_path, name):
    model = write_colour_model(tmp_path / "m.onnx")
    with pytest.raises(TsegError, match="Triton model name"):
        write_triton_model(model, tmp_path / "repo", name=name)
    assert not (tmp_path / "repo").exists()


def test_default_name_that_is_not_a_triton_name(tmp_path):
    model = write_colour_model(tmp_path / "my model.onnx")
    with pytest.raises(TsegError, match="pass another name"):
        write_triton_model(model, tmp_path / "repo")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_batch_size": -1}, "max_batch_size"),
        ({"max_batch_size": 2000}, "max_batch_size"),
        ({"max_batch_size": True}, "max_batch_size"),
        ({"device": "tpu"}, "gpu, cpu, auto"),
        ({"device": "cpu", "tensorrt_fp16": True}, "needs GPU instances"),
        ({"tensorrt_fp16": "yes"}, "tensorrt_fp16"),
    ],
)
def test_bad_options(tmp_path, kwargs, match):
    model = write_colour_model(tmp_path / "m.onnx")
    with pytest.raises(TsegError, match=match):
        write_triton_model(model, tmp_path / "repo", **kwargs)
    assert not (tmp_path / "repo").exists()


@pytest.mark.parametrize("kind", ["no metadata", "not onnx", "missing", "class count"])
def test_files_that_are_not_tseg_models(tmp_path, kind):
    path = tmp_path / "m.onnx"
    if kind == "no metadata":
        write_colour_model(path, props={})
        match = "no tseg metadata"
    elif kind == "not onnx":
        path.write_bytes(b"\x00\xffnot a protobuf at all" * 10)
        match = "not an ONNX model"
    elif kind == "missing":
        match = "No such file"
    else:
        write_colour_model(path, output_channels=5)
        match = r"output \(one score per class: 4\): need channels 4, the graph has 5"
    repo = tmp_path / "repo"
    repo.mkdir()
    with pytest.raises(TsegError, match=match) as err:
        write_triton_model(path, repo, name="m")
    assert "\n" not in str(err.value)
    assert list(repo.iterdir()) == []


def test_a_failed_write_leaves_no_half_model(tmp_path, monkeypatch):
    model = write_colour_model(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    write_triton_model(model, repo, name="first")
    before = snapshot(repo)

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(triton.shutil, "copyfile", full_disk)
    with pytest.raises(TsegError, match="no space left"):
        write_triton_model(model, repo, name="second")
    assert snapshot(repo) == before, "no temp folder and no half model left behind"


def test_a_temp_folder_left_by_a_killed_write_is_cleared(tmp_path):
    model = write_colour_model(tmp_path / "m.onnx")
    repo = tmp_path / "repo"
    stale = repo / f".m.abc123{triton.TEMP_SUFFIX}"
    (stale / "1").mkdir(parents=True)
    (stale / "1" / "model.onnx").write_bytes(b"half")
    write_triton_model(model, repo, name="m")
    assert sorted(p.name for p in repo.iterdir()) == ["m"]
    assert parse_config(repo / "m").name == "m"


def test_dynamic_channel_axes_are_filled_from_the_metadata(tmp_path):
    proto = build_colour_model()
    for value in (proto.graph.input[0], proto.graph.output[0]):
        value.type.tensor_type.shape.dim[1].dim_param = "channels"
    path = tmp_path / "m.onnx"
    onnx.save(proto, str(path))
    config = parse_config(write_triton_model(path, tmp_path / "repo"))
    assert list(config.input[0].dims) == [3, -1, -1] and list(config.output[0].dims) == [4, -1, -1]
