"""What the machine is, and what it can do: CPU, versions, providers, and a measured GEMM peak.

The peak is the fastest of a few GEMMs (:data:`GEMM_SHAPES`: two square ones and a convolution's
im2col shape) through ONNX Runtime on the device and threads the rows use, timed among the rows
(interleaved, :mod:`tseg.benchmarks.stats`): FP32 ``MatMul``; for INT8 rows ``MatMulInteger``
(uint8 x int8 -> int32 on the CPU, int8 x int8 on CUDA) and, on the CPU, ``QLinearMatMul``
(uint8 x int8 -> uint8); for FP16 rows on a GPU, an FP16 ``MatMul``. A GEMM's GFLOP/s =
2 M K N / its fastest run (the hardware's best when nothing else gets in the way). On a GPU the
GEMM's input and output stay on the device (:func:`resident_gemm`): the peak is the arithmetic.
Nothing here imports torch: versions come from package metadata.
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
        from tseg.runtime.model.tensorrt import gpu_name

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
    FP16 rows on a GPU with an FP16 GEMM, the rest with FP32; TensorRT rows on CUDA's GEMM;
    OpenVINO rows with OpenVINO's own GEMM (bf16 rows in bfloat16)."""
    if device == "openvino":
        return (precision if precision in ("int8", "bf16") else "fp32"), device
    gemm_device = "cpu" if device == "cpu" else "cuda"
    if precision == "int8":
        return "int8", gemm_device
    if precision == "fp16" and gemm_device == "cuda":
        return "fp16", gemm_device
    return "fp32", gemm_device


# The GEMMs whose best run is the peak, (M, K, N) per device: two square ones and a convolution's
# im2col product (M output pixels, K = 3 x 3 x input channels, N output channels). No single shape is
# a ceiling (a small one pays for its output buffer, a square one may tile worse than a network's convs),
# so the peak is the fastest of them.
GEMM_SHAPES = {
    "cpu": ((1024, 1024, 1024), (2048, 2048, 2048), (4096, 1152, 256)),
    "cuda": ((4096, 4096, 4096), (8192, 8192, 8192), (65536, 2304, 256)),
}
GEMM_SHAPES["openvino"] = GEMM_SHAPES["cpu"]


def gemm_ops(kind: str, device: str) -> tuple[str, ...]:
    """The ONNX ops timed for a peak: MatMul for float; for INT8 MatMulInteger (u8 x s8 -> int32 on the CPU,
    s8 x s8 on CUDA) and, on the CPU, QLinearMatMul (u8 x s8 -> u8, what QOperator models run); through
    OpenVINO a Q/DQ MatMul (what tseg's INT8 files hold, and what OpenVINO's INT8 kernels take)."""
    if kind != "int8":
        return ("MatMul",)
    if device == "openvino":
        return ("QDQ-MatMul",)
    return ("MatMulInteger", "QLinearMatMul") if device == "cpu" else ("MatMulInteger",)


def gemm_graph(kind: str, shape: tuple[int, int, int], device: str, op: str | None = None):
    """An ONNX model: (M, K) input ``a`` x (K, N) constant -> (M, N) ``c``, as ``kind`` ("fp32", "fp16", "bf16",
    "int8").

    Args:
        op: one of :func:`gemm_ops` (default: the first).
    """
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    op = op or gemm_ops(kind, device)[0]
    rng = np.random.default_rng(0)
    inits = []
    if op == "QDQ-MatMul":
        return _qdq_gemm_graph(shape)
    if kind == "int8":
        a_type = TensorProto.INT8 if device == "cuda" else TensorProto.UINT8
        inits.append(numpy_helper.from_array(rng.integers(-64, 64, size=(k, n), dtype=np.int8), "b"))
        if op == "QLinearMatMul":
            a_dtype = np.int8 if device == "cuda" else np.uint8
            inits += [numpy_helper.from_array(np.array(v, dtype=t), name) for name, v, t in (
                ("a_scale", 0.02, np.float32), ("a_zero", 0, a_dtype), ("b_scale", 0.01, np.float32),
                ("b_zero", 0, np.int8), ("c_scale", 0.5, np.float32), ("c_zero", 0, a_dtype))]
            node = helper.make_node(op, ["a", "a_scale", "a_zero", "b", "b_scale", "b_zero", "c_scale", "c_zero"],
                                    ["c"])
            out_type = a_type
        else:
            node = helper.make_node("MatMulInteger", ["a", "b"], ["c"])
            out_type = TensorProto.INT32
    else:
        single = kind in ("fp32", "bf16")  # bf16: a float32 graph that OpenVINO computes in bfloat16
        a_type = out_type = TensorProto.FLOAT if single else TensorProto.FLOAT16
        b = rng.standard_normal((k, n)).astype(np.float32 if single else np.float16)
        inits.append(numpy_helper.from_array(b, "b"))
        node = helper.make_node("MatMul", ["a", "b"], ["c"])
    graph = helper.make_graph(
        [node],
        f"gemm_{kind}_{op}",
        [helper.make_tensor_value_info("a", a_type, [m, k])],
        [helper.make_tensor_value_info("c", out_type, [m, n])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _qdq_gemm_graph(shape: tuple[int, int, int]):
    """float (M, K) -> QuantizeLinear/DequantizeLinear (uint8) x DequantizeLinear(int8 (K, N)) -> MatMul -> float."""
    from onnx import TensorProto, helper, numpy_helper

    m, k, n = shape
    weights = np.random.default_rng(0).integers(-64, 64, size=(k, n), dtype=np.int8)
    inits = [numpy_helper.from_array(weights, "b_q"), numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
             numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
             numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
             numpy_helper.from_array(np.array(0, np.int8), "b_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["a", "a_scale", "a_zero"], ["a_q"]),
             helper.make_node("DequantizeLinear", ["a_q", "a_scale", "a_zero"], ["a_dq"]),
             helper.make_node("DequantizeLinear", ["b_q", "b_scale", "b_zero"], ["b_dq"]),
             helper.make_node("MatMul", ["a_dq", "b_dq"], ["c"])]
    graph = helper.make_graph(nodes, "gemm_int8_qdq", [helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [m, n])], initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def gemm_input(kind: str, shape: tuple[int, int, int], device: str) -> np.ndarray:
    """The (M, K) input of :func:`gemm_graph`."""
    rng = np.random.default_rng(1)
    m, k, _ = shape
    if kind == "int8" and device == "openvino":  # the Q/DQ graph quantizes its float input itself
        return rng.standard_normal((m, k)).astype(np.float32)
    if kind == "int8":
        dtype = np.int8 if device == "cuda" else np.uint8
        low, high = (-64, 64) if device == "cuda" else (0, 128)
        return rng.integers(low, high, size=(m, k), dtype=dtype)
    return rng.standard_normal((m, k)).astype(np.float32 if kind in ("fp32", "bf16") else np.float16)


@dataclass
class PeakRunner:
    """One GEMM on a device, ready to time.

    Attributes:
        kind, device: what it measures ("fp32" / "fp16" / "bf16" / "int8", "cpu" / "cuda" / "openvino").
        shape: (M, K, N) of the (M, K) x (K, N) product.
        op: the ONNX op ("MatMul", "MatMulInteger", "QLinearMatMul").
        run: one GEMM (a callable with no arguments).
    """

    kind: str
    device: str
    shape: tuple[int, int, int]
    op: str
    run: object

    @property
    def flops(self) -> int:
        m, k, n = self.shape
        return 2 * m * k * n

    def describe(self) -> str:
        m, k, n = self.shape
        return f"{self.op} {m}x{k}x{n}"


def peak_gemms(kind: str, device: str) -> list[tuple[str, tuple[int, int, int]]]:
    """(op, (M, K, N)) of every GEMM timed for the (kind, device) peak: :func:`gemm_ops` x :data:`GEMM_SHAPES`."""
    return [(op, shape) for op in gemm_ops(kind, device) for shape in GEMM_SHAPES[device]]


def make_peak_runner(kind: str, device: str, *, op: str, shape: tuple[int, int, int], threads: int | None,
                     folder: Path) -> PeakRunner:
    """Writes one GEMM graph to ``folder`` and opens it like a model (same threads, same provider).

    Raises:
        TsegError: onnx is not installed, or ONNX Runtime cannot run this GEMM on the device.
    """
    try:
        import onnx
    except ImportError:
        raise TsegError("peak unavailable: the onnx package is not installed (pip install onnx)") from None
    from tseg.runtime.model.binding import BoundRunner
    from tseg.runtime.model.openvino import OpenVinoSettings
    from tseg.runtime.model.session import create_session

    path = Path(folder) / f"gemm_{kind}_{device}_{op}_{'x'.join(map(str, shape))}.onnx"
    onnx.save(gemm_graph(kind, shape, device, op), str(path))
    openvino = OpenVinoSettings(bf16=kind == "bf16", cache_dir=Path(folder)) if device == "openvino" else None
    session = create_session(path, device=device, threads=threads, openvino=openvino)
    data = gemm_input(kind, shape, device)
    runner = BoundRunner(session, input_name="a", output_name="c")
    if not runner.uses_binding:
        return PeakRunner(kind, device, shape, op, lambda: runner.run(data))
    run, _ = resident_gemm(session, data, device_type=runner.device_type, device_id=runner.device_id)
    return PeakRunner(kind, device, shape, op, run)


def resident_gemm(session, data: np.ndarray, *, device_type: str, device_id: int):
    """(run, fetch) for a GEMM whose input and output stay on the device (IOBinding, bound once).

    On a GPU the peak is the arithmetic alone: host copies of a large GEMM's input and output
    would take longer than the GEMM itself (the rows' own copies stay in their timings).
    ``run`` waits for the device; ``fetch`` copies the last output to the host.
    """
    import onnxruntime as ort

    binding = session.io_binding()
    binding.bind_ortvalue_input("a", ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(data), device_type,
                                                                     device_id))
    binding.bind_output("c", device_type, device_id)

    def run() -> None:
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()

    return run, lambda: binding.copy_outputs_to_cpu()[0]


def peak_folder() -> tempfile.TemporaryDirectory:
    """A temporary folder for the GEMM graphs (removed when closed)."""
    return tempfile.TemporaryDirectory(prefix="tseg-bench-")
