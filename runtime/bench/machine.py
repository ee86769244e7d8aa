"""What the machine is, and what it can do: CPU, versions, providers, and a measured GEMM peak.

The peak is a square GEMM through ONNX Runtime on the device and threads the rows use,
timed among the rows (interleaved, :mod:`tseg.runtime.bench.stats`): FP32 ``MatMul``; for
INT8 rows ``MatMulInteger`` (uint8 x int8 -> int32 on the CPU, int8 x int8 on CUDA); for FP16
rows on a GPU, an FP16 ``MatMul``. Peak GFLOP/s = 2 N^3 / the fastest run (the
hardware's best when nothing else gets in the way). Nothing here imports torch:
versions come from package metadata.
"""

from __future__ import annotations

import os
import platform
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path

import numpy as np

from tseg.runtime.errors import TsegError

# GEMM side per device: ~2 GFLOP on a CPU (tens of ms on a few cores), ~137 GFLOP on a GPU.
GEMM_SIDE = {"cpu": 1024, "cuda": 4096}


def _cpuinfo() -> list[dict[str, str]]:
    """/proc/cpuinfo as one dict per logical CPU ([] where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    cpus = []
    for block in text.strip().split("\n\n"):
        entry = {}
        for line in block.splitlines():
            key, _, value = line.partition(":")
            entry[key.strip()] = value.strip()
        cpus.append(entry)
    return cpus


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo, else the platform's word for it)."""
    for entry in _cpuinfo():
        for key in ("model name", "Model", "Hardware"):
            if entry.get(key):
                return entry[key]
    return platform.processor() or platform.machine() or "unknown"


def physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where it does not say."""
    pairs = {(e.get("physical id"), e.get("core id")) for e in _cpuinfo() if "core id" in e}
    return len(pairs) or None


def package_version(name: str) -> str | None:
    """An installed distribution's version, without importing it (None: not installed)."""
    try:
        return package_metadata.version(name)
    except package_metadata.PackageNotFoundError:
        return None


def machine_info(*, threads: int | None, devices: tuple[str, ...]) -> dict[str, object]:
    """What a reader needs to judge the figures: CPU, cores, threads, versions, providers, GPU.

    Args:
        threads: the intra-op threads the rows ran with (None: ONNX Runtime's default).
        devices: the devices benchmarked (the GPU is looked up only when one is a GPU).
    """
    import onnxruntime as ort

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = None
    if any(d != "cpu" for d in devices):
        from tseg.runtime.tensorrt import gpu_name

        gpu = gpu_name()
    ort_name = "onnxruntime-gpu" if package_version("onnxruntime-gpu") else "onnxruntime"
    return {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "physical_cores": physical_cores(),
        "usable_cpus": usable,
        "threads": threads if threads is not None else f"onnxruntime default ({usable})",
        "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": gpu,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "onnxruntime": f"{ort_name} {ort.__version__}",
        "providers": ort.get_available_providers(),
        "numpy": np.__version__,
        "torch": package_version("torch"),
        "onnx": package_version("onnx"),
        "tseg": package_version("tseg"),
    }


def load_warning(info: dict[str, object]) -> str | None:
    """A warning when the machine was busy at the start (load average above half the usable CPUs)."""
    load, cpus = info.get("load_average"), info.get("usable_cpus") or 1
    if isinstance(load, (int, float)) and load > 0.5 * cpus:
        return (
            f"warning: load average {load:g} on {cpus} usable CPUs: the machine is busy, latencies are noisy"
            " (rows are interleaved, so their ratios hold better than their absolute values)"
        )
    return None


def describe_machine(info: dict[str, object]) -> str:
    """One line: CPU, cores, threads, GPU, ONNX Runtime."""
    cores = f"{info['physical_cores']} cores / " if info.get("physical_cores") else ""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ""
    return (
        f"{info['cpu']} ({cores}{info['logical_cpus']} logical CPUs, {info['usable_cpus']} usable),"
        f" threads: {info['threads']}{gpu}, {info['onnxruntime']}, load average {info['load_average']}"
    )


def peak_kind(precision: str, device: str) -> tuple[str, str]:
    """(GEMM kind, device) of the peak a row is compared with: INT8 rows with an INT8 GEMM,
    FP16 rows on a GPU with an FP16 GEMM, the rest with FP32; TensorRT rows on CUDA's GEMM."""
    gemm_device = "cpu" if device == "cpu" else "cuda"
    if precision == "int8":
        return "int8", gemm_device
    if precision == "fp16" and gemm_device == "cuda":
        return "fp16", gemm_device
    return "fp32", gemm_device


def gemm_graph(kind: str, side: int, device: str):
    """An ONNX model: (side, side) input x (side, side) constant, as ``kind`` ("fp32", "fp16", "int8")."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if kind == "int8":
        a_type = TensorProto.INT8 if device == "cuda" else TensorProto.UINT8
        b = rng.integers(-64, 64, size=(side, side), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
        out_type = TensorProto.INT32
    else:
        a_type = out_type = TensorProto.FLOAT if kind == "fp32" else TensorProto.FLOAT16
        b = rng.standard_normal((side, side)).astype(np.float32 if kind == "fp32" else np.float16)
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph(
        [node],
        f"gemm_{kind}",
        [helper.make_tensor_value_info("a", a_type, [side, side])],
        [helper.make_tensor_value_info("c", out_type, [side, side])],
        initializer=[numpy_helper.from_array(b, "b")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def gemm_input(kind: str, side: int, device: str) -> np.ndarray:
    rng = np.random.default_rng(1)
    if kind == "int8":
        dtype = np.int8 if device == "cuda" else np.uint8
        low, high = (-64, 64) if device == "cuda" else (0, 128)
        return rng.integers(low, high, size=(side, side), dtype=dtype)
    return rng.standard_normal((side, side)).astype(np.float32 if kind == "fp32" else np.float16)


@dataclass
class PeakRunner:
    """A square GEMM on a device, ready to time.

    Attributes:
        kind, device: what it measures ("fp32" / "fp16" / "int8", "cpu" / "cuda").
        side: N of the N x N x N GEMM.
        run: one GEMM (a callable with no arguments).
    """

    kind: str
    device: str
    side: int
    run: object

    @property
    def flops(self) -> int:
        return 2 * self.side**3


def make_peak_runner(kind: str, device: str, *, threads: int | None, folder: Path) -> PeakRunner:
    """Builds the GEMM graph in ``folder`` and opens it like a model (same threads, same provider).

    Raises:
        TsegError: onnx is not installed, or ONNX Runtime cannot run this GEMM on the device.
    """
    try:
        import onnx
    except ImportError:
        raise TsegError("peak unavailable: the onnx package is not installed (pip install onnx)") from None
    from tseg.runtime.binding import BoundRunner
    from tseg.runtime.session import create_session

    side = GEMM_SIDE[device]
    path = Path(folder) / f"gemm_{kind}_{device}.onnx"
    onnx.save(gemm_graph(kind, side, device), str(path))
    session = create_session(path, device=device, threads=threads)
    runner = BoundRunner(session, input_name="a", output_name="c")
    data = gemm_input(kind, side, device)
    return PeakRunner(kind, device, side, lambda: runner.run(data))


def peak_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for the GEMM graphs (removed when closed)."""
    return tempfile.TemporaryDirectory(prefix="tseg-bench-")
