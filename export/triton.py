"""A tseg ONNX file -> one model of a Triton Inference Server model repository.

Layout written (Triton's, see its model_repository.md)::

    REPO/NAME/config.pbtxt     platform "onnxruntime_onnx", batching, tensors, tseg metadata
    REPO/NAME/labels.txt       one class name per line (the output's label_filename)
    REPO/NAME/1/model.onnx     a byte-for-byte copy of the file

``config.pbtxt`` is protobuf text format for Triton's ``ModelConfig`` message. It is
written here, as plain text, so that the export needs no Triton package at run time;
the tests parse it with Triton's own schema (tritonclient's ``model_config_pb2``) so
that a misspelt field fails there. The output is deterministic: same file, same options,
same bytes.

A user's folder is never overwritten: REPO may be missing, empty, or a Triton repository
(every entry a folder holding a config.pbtxt) to which a new NAME is added. The model
folder is built under a hidden temp name inside REPO and renamed into place at the end,
so a crash leaves no half model that Triton would try (and fail) to load.

The file is read as the runtime reads it (:mod:`tseg.runtime.model.onnx_file`: the same graph
contract, the same TensorRT profile).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import TEMP_SUFFIX, TempFile, atomic_write, atomic_write_bytes
from tseg.runtime.model.metadata import MAX_BATCH_SIZE, ModelMetadata
from tseg.runtime.model.onnx_file import TensorInfo, check_graph_io, read_model_file, static_dim
from tseg.runtime.model.tensorrt import profile_shapes

PLATFORM = "onnxruntime_onnx"
CONFIG_NAME, LABELS_NAME, MODEL_FILE, VERSION = "config.pbtxt", "labels.txt", "model.onnx", "1"
# Requests wait up to 1 ms for others to batch with: a 512x512 segmentation run takes tens of ms on a
# GPU, so the wait costs little latency and lets concurrent clients share one run.
MAX_QUEUE_DELAY_US = 1000
# Triton's instance_group kinds: "auto" runs on the GPUs when there are any, else on the CPU.
DEVICES = {"gpu": "KIND_GPU", "cpu": "KIND_CPU", "auto": "KIND_AUTO"}
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# The tensor types a tseg graph has (onnx_file.INPUT_TYPE, OUTPUT_TYPES) -> Triton data types.
_TRITON_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(double)": "TYPE_FP64"}


@dataclass(frozen=True)
class TensorSpec:
    """One graph input or output as Triton sees it.

    Attributes:
        name: the tensor's name in the graph.
        data_type: Triton's type name, e.g. "TYPE_FP32".
        dims: the full shape, batch axis first; -1 where the graph leaves an axis dynamic.
    """

    name: str
    data_type: str
    dims: tuple[int, ...]


def default_model_name(onnx_path: Path) -> str:
    """The model name used when none is given: the file's stem with '.' -> '_' (best.int8.onnx -> best_int8)."""
    return Path(onnx_path).stem.replace(".", "_")


def check_model_name(name: object) -> str:
    """A Triton model name that is also a safe folder name.

    Raises:
        TsegError: not a string of 1-128 letters, digits, '_', '.', '-' starting with a letter, digit or '_'.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise TsegError(
            f"Triton model name: need 1-128 letters, digits, '_', '.' or '-', starting with a letter, digit or '_'"
            f" (it becomes the folder REPO/NAME), got {name!r:.80}; pass another name"
        )
    return name


def _check_options(max_batch_size: object, device: object, tensorrt_fp16: object) -> None:
    if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or not (
        0 <= max_batch_size <= MAX_BATCH_SIZE
    ):
        raise TsegError(
            f"max_batch_size: need an integer in 0..{MAX_BATCH_SIZE} (0 = Triton does not batch),"
            f" got {max_batch_size!r:.40}"
        )
    if device not in DEVICES:
        raise TsegError(f"Triton device: need one of {', '.join(DEVICES)}, got {device!r:.40}")
    if not isinstance(tensorrt_fp16, bool):
        raise TsegError(f"tensorrt_fp16: need True or False, got {tensorrt_fp16!r:.40}")
    if tensorrt_fp16 and device == "cpu":
        raise TsegError(
            "tensorrt_fp16 needs GPU instances (TensorRT is a GPU accelerator) but the Triton device is cpu:"
            " use device gpu or auto, or leave TensorRT off"
        )


def _tensor_spec(tensor: TensorInfo) -> TensorSpec:
    """A tensor that :func:`~tseg.runtime.model.onnx_file.check_graph_io` passed -> TensorSpec (-1: dynamic)."""
    dims = tuple(-1 if static_dim(d) is None else d for d in tensor.shape)
    return TensorSpec(name=tensor.name, data_type=_TRITON_TYPES[tensor.type], dims=dims)


def read_model(onnx_path: Path) -> tuple[TensorSpec, TensorSpec, ModelMetadata]:
    """Reads a tseg ONNX file's input, output and metadata (the weights are not needed).

    Returns:
        (input, output, metadata): input dims (N, 3, H, W), output dims (N, C, H, W), -1 where dynamic.

    Raises:
        TsegError: the file is missing, not ONNX, has no tseg metadata, keeps its weights in
            external files, has more than one output, or its graph does not fit its metadata
            (:func:`~tseg.runtime.model.onnx_file.check_graph_io`).
    """
    onnx_path = Path(onnx_path)
    model = read_model_file(onnx_path)
    meta = ModelMetadata.from_props(model.props, source=str(onnx_path))
    if model.external_data:
        raise TsegError(f"{onnx_path} keeps its weights in external data files; Triton's copy would lack them:"
                        " export a single-file model with tseg-export")
    image, logits = check_graph_io(model.inputs, model.outputs, meta, source=str(onnx_path), sizes=False)
    if len(model.outputs) != 1:
        raise TsegError(f"{onnx_path}: need a graph with one output for Triton, got {len(model.outputs)};"
                        " export it with tseg-export")
    return _tensor_spec(image), _tensor_spec(logits), meta


def _triton_dims(spec: TensorSpec, channels: int, max_batch_size: int) -> tuple[int, ...]:
    """The dims Triton wants: without the batch axis when it batches, the channel axis filled in."""
    dims = (spec.dims[0], channels, *spec.dims[2:])
    return dims[1:] if max_batch_size > 0 else dims


def _quote(text: str) -> str:
    """A protobuf text-format string literal (non-ASCII as octal escapes of its UTF-8 bytes)."""
    out = []
    for byte in text.encode("utf-8"):
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif 0x20 <= byte < 0x7F:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _tensor_block(spec: TensorSpec, dims: Sequence[int], *, labels: bool) -> list[str]:
    lines = ["  {", f"    name: {_quote(spec.name)}", f"    data_type: {spec.data_type}",
             f"    dims: [ {', '.join(str(d) for d in dims)} ]"]
    if labels:
        lines.append(f"    label_filename: {_quote(LABELS_NAME)}")
    return [*lines, "  }"]


def tensorrt_parameters(image: TensorSpec, meta: ModelMetadata, *, max_batch_size: int) -> dict[str, str]:
    """The TensorRT accelerator's parameters (Triton's onnxruntime backend maps them to TensorRT EP options).

    FP16 precision, and tseg's one optimisation profile (:func:`tseg.runtime.model.tensorrt.profile_shapes`):
    batch 1 up to max_batch_size (at least 1), height and width the model's input size (clients resize
    to it, as tseg's runtime does; static graph dims win). Without a profile, ONNX Runtime builds an
    engine for the first shape it sees and rebuilds it, for minutes, whenever the dynamic batcher forms
    a larger batch. No engine cache: ONNX Runtime keys it on the model's path, not its content, so a
    replaced model.onnx could reuse a stale engine.
    """
    dims = tuple(None if d == -1 else d for d in image.dims)
    profile = profile_shapes(image.name, dims, input_size=meta.input_size, batch_size=max(max_batch_size, 1))
    return {"precision_mode": "FP16", **profile}


def config_text(name: str, image: TensorSpec, logits: TensorSpec, meta: ModelMetadata, *,
                max_batch_size: int, device: str, tensorrt_fp16: bool) -> str:
    """The model's config.pbtxt (Triton's ModelConfig in protobuf text format), deterministic.

    Args:
        name: the model (and folder) name.
        image, logits: the graph's input (N, 3, H, W) and output (N, C, H, W).
        meta: the file's tseg metadata; every ``tseg.*`` property goes into ``parameters``
            (string values, JSON as in the ONNX file) so a client can preprocess without the file.
        max_batch_size: 0 (no batching: full dims) or the largest batch Triton forms.
        device: "gpu", "cpu" or "auto" (the instance_group kind).
        tensorrt_fp16: add ONNX Runtime's TensorRT accelerator with FP16 precision.
    """
    if max_batch_size > 0 and image.dims[0] != -1:
        raise TsegError(f"the graph's batch axis is fixed at {image.dims[0]}, so Triton cannot batch requests:"
                        " pass max_batch_size 0 or re-export the model with tseg-export (dynamic batch axis)")
    lines = [f"name: {_quote(name)}", f"platform: {_quote(PLATFORM)}", f"max_batch_size: {max_batch_size}",
             "input ["]
    lines += _tensor_block(image, _triton_dims(image, 3, max_batch_size), labels=False)
    lines += ["]", "output ["]
    lines += _tensor_block(logits, _triton_dims(logits, meta.num_classes, max_batch_size), labels=True)
    lines += ["]"]
    if max_batch_size > 0:
        lines += ["dynamic_batching {", f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}", "}"]
    lines += ["instance_group [", "  {", "    count: 1", f"    kind: {DEVICES[device]}", "  }", "]"]
    if tensorrt_fp16:
        lines += ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator [", "      {",
                  f"        name: {_quote('tensorrt')}"]
        for key, value in tensorrt_parameters(image, meta, max_batch_size=max_batch_size).items():
            lines.append(f"        parameters {{ key: {_quote(key)} value: {_quote(value)} }}")
        lines += ["      }", "    ]", "  }", "}"]
    for key, value in sorted(meta.to_props().items()):
        lines.append(f"parameters {{ key: {_quote(key)} value {{ string_value: {_quote(value)} }} }}")
    return "\n".join(lines) + "\n"


def _check_repo(repo: Path, name: str) -> None:
    """Refuses a repo path that is a file, holds other content, or already has the model."""
    if repo.exists() and not repo.is_dir():
        raise TsegError(f"Triton repository {repo} is a file, not a folder: choose a new or empty folder,"
                        " or an existing Triton model repository")
    if not repo.is_dir():
        return
    target = repo / name
    if target.exists() or target.is_symlink():
        raise TsegError(f"Triton repository {repo} already has a model {name!r} ({target}); it is never overwritten:"
                        " pass another model name, or remove that folder yourself")
    others = sorted(entry.name for entry in repo.iterdir()
                    if not _is_own_temp(entry) and not (entry.is_dir() and (entry / CONFIG_NAME).is_file()))
    if others:
        raise TsegError(f"Triton repository {repo} holds other content ({', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}), not only model folders with a {CONFIG_NAME}:"
                        " choose a new or empty folder, or an existing Triton model repository")


def _is_own_temp(entry: Path) -> bool:
    """A model folder that a killed write left under its hidden temp name."""
    return entry.name.startswith(".") and entry.name.endswith(TEMP_SUFFIX) and entry.is_dir() and not entry.is_symlink()


def _fill_model_folder(folder: Path, onnx_path: Path, config: str, classes: Sequence[str]) -> None:
    atomic_write(folder / VERSION / MODEL_FILE, lambda tmp: shutil.copyfile(onnx_path, tmp))
    atomic_write_bytes(folder / LABELS_NAME, ("\n".join(classes) + "\n").encode("utf-8"))
    atomic_write_bytes(folder / CONFIG_NAME, config.encode("utf-8"))


def write_triton_model(onnx_path: Path, repo: Path, *, name: str | None = None, max_batch_size: int = 8,
                       tensorrt_fp16: bool = False, device: str = "gpu") -> Path:
    """Adds a tseg ONNX file to a Triton model repository as REPO/NAME (config, labels, version 1).

    Args:
        onnx_path: an .onnx file written by tseg-export (any precision).
        repo: the repository folder: missing (created), empty, or a Triton repository
            (every entry a model folder with a config.pbtxt); never overwritten.
        name: the model name; default :func:`default_model_name` (best.int8.onnx -> best_int8).
        max_batch_size: the largest batch Triton's dynamic batcher forms (dims then leave out
            the batch axis); 0 turns batching off. 0..``MAX_BATCH_SIZE`` (1024).
        tensorrt_fp16: run the model through ONNX Runtime's TensorRT accelerator in FP16
            (GPU instances only; the server needs TensorRT, as NVIDIA's tritonserver images have).
        device: where the instances run: "gpu" (KIND_GPU), "cpu" (KIND_CPU, for servers
            without a GPU) or "auto" (GPUs when present, else the CPU).

    Returns:
        The model folder, ``repo / name``.

    Raises:
        TsegError: a bad name or option, a file that is not a tseg ONNX model, or a repo
            path that is a file, holds other content, or already has the name.
    """
    onnx_path, repo = Path(onnx_path), Path(repo)
    name = check_model_name(default_model_name(onnx_path) if name is None else name)
    _check_options(max_batch_size, device, tensorrt_fp16)
    image, logits, meta = read_model(onnx_path)
    config = config_text(name, image, logits, meta, max_batch_size=max_batch_size, device=device,
                         tensorrt_fp16=tensorrt_fp16)
    _check_repo(repo, name)
    temp = TempFile(repo / name, folder=True)  # also removes what a killed write of this name left
    try:
        _fill_model_folder(temp.temp, onnx_path, config, meta.classes)
    except BaseException:
        temp.discard()
        raise
    try:
        temp.commit()  # os.rename: fails, rather than replaces, if a non-empty folder appeared meanwhile
    except OSError:
        if (repo / name).exists():
            raise TsegError(f"Triton repository {repo}: a model {name!r} appeared while this one was written;"
                            " nothing was replaced") from None
        raise
    return repo / name



def check_triton_target(repo: Path, names: Sequence[str], *, max_batch_size: int = 8, tensorrt_fp16: bool = False,
                        device: str = "gpu") -> None:
    """Refuses, before any work, what :func:`write_triton_model` would refuse about the repo and options.

    Raises:
        TsegError: a bad name or option, the same name twice, or a repo path that is a file,
            holds other content, or already has one of the names.
    """
    _check_options(max_batch_size, device, tensorrt_fp16)
    checked = [check_model_name(name) for name in names]
    if len(set(checked)) != len(checked):
        raise TsegError(f"Triton model names must differ, got {', '.join(checked)}")
    for name in checked:
        _check_repo(Path(repo), name)
