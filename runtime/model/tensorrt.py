"""TensorRT through ONNX Runtime's TensorRT provider: its options, caches and libraries.

``--device tensorrt`` hands ONNX Runtime (provider, options) for TensorRT:

- precision: FP16 kernels with ``--trt-fp16`` (FP32 files) and always for FP16 files;
  INT8 for tseg's QDQ files through TensorRT's *explicit* quantization (the Q/DQ scales
  in the file): ``trt_int8_enable`` and never a calibration table, which TensorRT
  refuses for a graph with Q/DQ nodes;
- one optimisation profile for the image input, from the metadata's input size and the
  batch size (see :func:`profile_shapes`);
- engine and timing caches under tseg's cache folder. ONNX Runtime names its engine
  files by a hash of the graph's tensor *names*, its own version, CUDA and TensorRT
  major.minor, so retrained weights under the same names, another GPU model or a
  TensorRT patch release would reuse a stale engine. So engines go to a folder keyed
  by the model file's sha256, the GPU's name, the TensorRT version, the precision
  flags and the profile; timing caches (per-layer kernel timings, valid for any model)
  to one keyed by GPU and TensorRT version only.

Nothing here needs torch or TensorRT's Python module: the GPU's name comes from the
CUDA driver (or nvidia-smi, or /proc), TensorRT's version from ``libnvinfer`` itself.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.cache_dir import default_cache_dir, make_cache_folder
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import MAX_BATCH_SIZE, ModelMetadata
from tseg.runtime.model.onnx_file import check_graph_io, read_model_file, static_dim

DEFAULT_TRT_MAJOR = "10"  # when the provider library cannot be read: what ONNX Runtime 1.18-1.31 link
_PIP_LIB_PACKAGES = ("tensorrt_libs", "tensorrt_cu13_libs", "tensorrt_cu12_libs")  # NVIDIA's wheels of the libraries


@dataclass(frozen=True)
class TensorrtSettings:
    """How to build TensorRT engines for a model.

    Attributes:
        fp16: let TensorRT use FP16 kernels for an FP32 (or INT8) file (``--trt-fp16``).
        cache_dir: root of the engine and timing caches; None: tseg's cache folder
            (:func:`default_cache_dir`).
        batch_size: the largest batch the engine takes (max of the optimisation profile),
            1..``MAX_BATCH_SIZE``.
    """

    fp16: bool = False
    cache_dir: Path | None = None
    batch_size: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.fp16, bool):
            raise TsegError(f"TensorrtSettings.fp16: need True or False, got {self.fp16!r:.40}")
        if self.cache_dir is not None:
            if not isinstance(self.cache_dir, (str, os.PathLike)):
                raise TsegError(f"TensorrtSettings.cache_dir: need a folder path or None, got {self.cache_dir!r:.60}")
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        size = self.batch_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
            raise TsegError(f"TensorrtSettings.batch_size: need an integer in 1..{MAX_BATCH_SIZE}, got {size!r:.40}")


# ---------------------------------------------------------------------- options


def profile_shapes(input_name: str, dims: tuple, *, input_size: tuple[int, int], batch_size: int) -> dict[str, str]:
    """TensorRT's optimisation profile for the image input, as ONNX Runtime's provider options.

    tseg resizes every image to the metadata's input size before the model (TTA scales
    other than 1 are refused with TensorRT), so height and width are fixed in practice
    even though the exported graph leaves them dynamic: the profile pins them there and
    spans batch 1..``batch_size``, with ``batch_size`` as the shape to tune for. Static
    graph dims win. The one profile of tseg: ``--device tensorrt`` and Triton's TensorRT
    accelerator (:func:`tseg.export.triton.tensorrt_parameters`) both write it.

    Args:
        input_name: the graph input's name.
        dims: its (N, C, H, W) dims from the graph (ints where static).
        input_size: (H, W) from the metadata.
        batch_size: the largest batch.

    Returns:
        ``trt_profile_{min,opt,max}_shapes`` as ``name:NxCxHxW``.

    Raises:
        TsegError: ``dims`` is not rank 4, or ``input_name`` holds a character that
            separates the profile's fields.
    """
    if len(dims) != 4:
        raise TsegError(f"TensorRT profile: need a rank-4 (N, 3, H, W) input, the graph's {input_name!r} has {dims}")
    if re.search(r"[,:\s]", input_name):
        raise TsegError(
            f"TensorRT profile: the input name {input_name!r} cannot be written in one (',', ':' and spaces"
            " separate its fields): rename the graph input, or leave TensorRT off"
        )

    def shape(batch: int) -> str:
        wanted = (batch, 3, *input_size)
        return "x".join(str(d if static_dim(d) is not None else w) for d, w in zip(dims, wanted, strict=True))

    return {
        "trt_profile_min_shapes": f"{input_name}:{shape(1)}",
        "trt_profile_opt_shapes": f"{input_name}:{shape(batch_size)}",
        "trt_profile_max_shapes": f"{input_name}:{shape(batch_size)}",
    }


def cache_key(**parts: object) -> str:
    """A short stable hash of ``parts`` (JSON with sorted keys): the name of a cache folder."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _bool(flag: bool) -> str:
    return "True" if flag else "False"


def tensorrt_provider_options(model_path: Path, metadata: ModelMetadata, settings: TensorrtSettings, *,
                              gpu: str, trt_version: str) -> dict[str, str]:
    """ONNX Runtime's TensorRT provider options for one model file (all values strings).

    Args:
        model_path: the .onnx file (hashed, and its graph read: :func:`~tseg.runtime.model.onnx_file.read_model_file`).
        metadata: its tseg metadata (precision, input size).
        settings: FP16, cache folder, batch size.
        gpu: the GPU's name (part of the engine and timing cache keys).
        trt_version: TensorRT's version (part of both keys).

    Returns:
        Precision flags, profile shapes and the engine/timing cache folders:
        ``CACHE/tensorrt/engines/KEY`` (KEY: model sha256, GPU, TensorRT, flags, profile)
        and ``CACHE/tensorrt/timing/KEY`` (KEY: GPU, TensorRT). Nothing is created here.

    Raises:
        TsegError: the file is unreadable, or its graph does not fit its metadata
            (:func:`~tseg.runtime.model.onnx_file.check_graph_io`).
    """
    model = read_model_file(Path(model_path))
    image, _ = check_graph_io(model.inputs, model.outputs, metadata, source=str(model_path))
    fp16 = settings.fp16 or metadata.precision == "fp16"  # an FP16 file needs FP16 kernels to stay FP16
    int8 = metadata.precision == "int8"  # QDQ: explicit quantization, so no calibration table
    if int8 and metadata.calibration.get("target", "cpu") != "tensorrt":
        raise TsegError(
            f"{model_path} was quantized for the CPU (uint8 activations, which TensorRT does not take):"
            " export it with tseg-export --precision int8 --int8-target tensorrt, or run it with device='cpu' or"
            " device='cuda'"
        )
    profiles = profile_shapes(image.name, image.shape, input_size=metadata.input_size, batch_size=settings.batch_size)
    if all(static_dim(d) is not None for d in image.shape):
        profiles = {}  # a static graph needs no profile
    root = (settings.cache_dir or default_cache_dir()).expanduser().absolute() / "tensorrt"
    engine_key = cache_key(model=model.sha256, gpu=gpu, tensorrt=trt_version, fp16=fp16, int8=int8, **profiles)
    timing_key = cache_key(gpu=gpu, tensorrt=trt_version)
    options = {
        "trt_fp16_enable": _bool(fp16),
        "trt_int8_enable": _bool(int8),
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(root / "engines" / engine_key),
        "trt_engine_cache_prefix": re.sub(r"[^A-Za-z0-9_]", "_", Path(model_path).stem)[:64] or "model",
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(root / "timing" / timing_key),
    }
    options.update(profiles)
    return options


def cache_folders(options: dict[str, str]) -> list[Path]:
    """The folders the options name (created just before a TensorRT session, never otherwise)."""
    return [Path(options[key]) for key in ("trt_engine_cache_path", "trt_timing_cache_path") if key in options]


# ---------------------------------------------------------------------- the machine: TensorRT and the GPU


def checked_provider_options(path: Path, settings: TensorrtSettings) -> dict[str, str]:
    """TensorRT's provider options for ``path``, once its library and the GPU are found; makes the cache folders.

    Raises:
        TsegError: one line: TensorRT's library missing (naming what to install), no GPU,
            the model without tseg metadata, or a cache folder that cannot be made.
    """
    version = find_tensorrt()
    gpu = gpu_name()
    if gpu is None:
        raise TsegError(
            "device='tensorrt': no NVIDIA GPU found (asked the CUDA driver, nvidia-smi and /proc/driver/nvidia);"
            " TensorRT runs on one: use device='cpu'",
            parameter="device",
        )
    metadata = ModelMetadata.from_props(read_model_file(path).props, source=str(path))
    options = tensorrt_provider_options(path, metadata, settings, gpu=gpu, trt_version=version)
    for folder in cache_folders(options):
        make_cache_folder(folder, engine="TensorRT")
    return options


def _provider_library() -> Path | None:
    """ONNX Runtime's TensorRT provider library, if this onnxruntime has one."""
    module = sys.modules.get("onnxruntime")
    origin = getattr(module, "__file__", None)
    if origin is None:
        try:
            spec = importlib.util.find_spec("onnxruntime")
        except (ImportError, ValueError):
            return None
        origin = spec.origin if spec is not None else None
    if origin is None:
        return None
    name = "onnxruntime_providers_tensorrt.dll" if sys.platform == "win32" else "libonnxruntime_providers_tensorrt.so"
    path = Path(origin).parent / "capi" / name
    return path if path.is_file() else None


def required_versions() -> tuple[str, str | None]:
    """(TensorRT major, CUDA major) that this onnxruntime's TensorRT provider was linked against.

    Read from the sonames in the provider library (``libnvinfer.so.10``, ``libcudart.so.13``);
    (10, None) when it cannot be read.
    """
    path = _provider_library()
    try:
        data = path.read_bytes() if path is not None else b""
    except OSError:
        data = b""
    trt = re.search(rb"libnvinfer\.so\.(\d+)\x00|nvinfer_(\d+)\.dll", data)
    cuda = re.search(rb"libcudart\.so\.(\d+)\x00|cudart64_(\d+)\.dll", data)
    major = (trt.group(1) or trt.group(2)).decode() if trt else DEFAULT_TRT_MAJOR
    return major, (cuda.group(1) or cuda.group(2)).decode()[:2] if cuda else None


def install_hint() -> str:
    """What to install for this onnxruntime's TensorRT provider, e.g. TensorRT 10 for CUDA 13."""
    major, cuda = required_versions()
    package = f"tensorrt-cu{cuda or 12}>={major},<{int(major) + 1}"
    either = "" if cuda else " (or -cu13: the CUDA of this onnxruntime)"
    library = f"nvinfer_{major}.dll" if sys.platform == "win32" else f"libnvinfer.so.{major}"
    return (
        f"TensorRT {major} ({library}, which this onnxruntime was built for): pip install '{package}'{either}"
        f" or NVIDIA's TensorRT {major} with its lib folder on the library path"
    )


def _library_candidates(major: str) -> list[str]:
    """Where libnvinfer may be: NVIDIA's pip wheels (full paths) first, then by name on the library path."""
    names = [f"nvinfer_{major}.dll"] if sys.platform == "win32" else [f"libnvinfer.so.{major}"]
    found = []
    for package in _PIP_LIB_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for folder in (spec.submodule_search_locations or []) if spec is not None else []:
            found += [str(Path(folder) / name) for name in names if (Path(folder) / name).is_file()]
    return found + names


def _decode_version(number: int) -> str:
    """getInferLibVersion(): major*10000 + minor*100 + patch from TensorRT 10, major*1000 + ... before."""
    if number >= 100000:
        return f"{number // 10000}.{number // 100 % 100}.{number % 100}"
    return f"{number // 1000}.{number // 100 % 10}.{number % 100}"


def find_tensorrt() -> str:
    """Loads this onnxruntime's TensorRT library into the process and returns its version.

    Loading it first (from NVIDIA's pip wheels when they are installed) lets ONNX Runtime's
    provider find it by name afterwards, as ``preload_dlls`` does for CUDA.

    Raises:
        TsegError: one line naming the library and what to install.
    """
    major, _ = required_versions()
    errors = []
    for candidate in _library_candidates(major):
        try:
            library = ctypes.CDLL(candidate, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        except OSError as err:
            errors.append(str(err).strip())
            continue
        folder = Path(candidate).parent
        for sibling in (f"libnvonnxparser.so.{major}", f"libnvinfer_plugin.so.{major}"):
            if os.sep in candidate and (folder / sibling).is_file():
                try:
                    ctypes.CDLL(str(folder / sibling), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
                except OSError:
                    pass  # the provider's own load then names what is missing
        try:
            return _decode_version(int(library.getInferLibVersion()))
        except (AttributeError, OSError):
            return major
    reason = f" ({errors[-1][:200]})" if errors else ""
    raise TsegError(
        f"device='tensorrt': TensorRT's libraries were not found{reason}; install {install_hint()}", parameter="device"
    )


def gpu_name() -> str | None:
    """The name of the GPU ONNX Runtime uses (CUDA device 0 of the visible ones), or None when none is found.

    Tried in turn: the CUDA driver (honours CUDA_VISIBLE_DEVICES), nvidia-smi, /proc/driver/nvidia.
    """
    for finder in (_gpu_from_driver, _gpu_from_nvidia_smi, _gpu_from_proc):
        try:
            name = finder()
        except (OSError, ValueError, AttributeError, subprocess.SubprocessError):
            name = None
        if name:
            return name.strip()
    return None


def _gpu_from_driver() -> str | None:
    cuda = ctypes.CDLL("nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1")
    device = ctypes.c_int()
    buffer = ctypes.create_string_buffer(256)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGet(ctypes.byref(device), 0) != 0:
        return None
    if cuda.cuDeviceGetName(buffer, len(buffer), device) != 0:
        return None
    return buffer.value.decode(errors="replace")


def _gpu_from_nvidia_smi() -> str | None:
    command = ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    if visible:
        command += ["-i", visible]
    run = subprocess.run(command, capture_output=True, text=True, timeout=20, check=False)
    lines = run.stdout.strip().splitlines()
    return lines[0] if run.returncode == 0 and lines else None


def _gpu_from_proc() -> str | None:
    names = set()
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        match = re.search(r"^Model:\s*(.+)$", info.read_text(errors="replace"), re.MULTILINE)
        if match:
            names.add(match.group(1).strip())
    return names.pop() if len(names) == 1 else None  # several models: cannot tell which is device 0
