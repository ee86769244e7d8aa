"""The benchmark's rows: what each one is (:class:`Row`), and the plan of every row to run.

One row per (model file or PyTorch eager, precision, device, size, batch). Each ONNX row opens
the file with :func:`~tseg.runtime.model.session.create_session` (the device's provider or a
one-line refusal, never a silent CPU fallback) and runs one batch of random (batch, 3, size,
size) float32 input through :class:`~tseg.runtime.model.binding.BoundRunner`, as ``tseg-infer``
runs its batches. :mod:`tseg.benchmarks.measure` times them.

The PyTorch eager row comes from :mod:`tseg.benchmarks.eager`, imported only when a checkpoint
is given: tseg-bench runs on the runtime alone (no torch) otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tseg.benchmarks.flops import FlopCount, count_flops
from tseg.runtime.cli_errors import one_line
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import ModelMetadata

DEVICES = ("cpu", "cuda", "tensorrt", "openvino")
EAGER_DEVICES = ("cpu", "cuda")
TRAIN_EXTRA = "pip install 'tseg[train]'"


@dataclass
class Row:
    """One benchmark row; the figures are None when the row failed (``status`` says why).

    Attributes:
        model: the file's name (``best.pt (PyTorch eager)`` for the eager row).
        path: the file.
        engine: "onnxruntime", "openvino" or "pytorch".
        precision: from the file's tseg metadata (eager: fp32; "bf16" for an FP32 file OpenVINO runs in bfloat16).
        device: "cpu", "cuda", "tensorrt" or "openvino".
        size: (height, width) of the input.
        batch: images per run.
        status: "ran" or "failed: <one line>".
        file_mb: the file's size in MB (10^6 bytes).
        runs, min_ms, p50_ms, p90_ms, p99_ms, images_per_s: see :class:`~tseg.benchmarks.stats.Summary`.
        gflops: GFLOPs per image (counted from the graph; eager: by torch's flop counter), every kernel tap.
        effective_gflops: ``gflops`` less the convolution taps on zero padding (which the kernels skip).
        gflops_per_s: effective_gflops * batch / p50.
        peak_gflops_per_s: the GEMM peak this row is compared with (``peak`` names it).
        peak_fraction: gflops_per_s / peak_gflops_per_s.
        miou: val mIoU with --coco (the runtime's own scoring, as tseg-infer --eval).
        notes: why a figure is missing.
    """

    model: str
    path: str
    engine: str
    precision: str
    device: str
    size: tuple[int, int]
    batch: int
    status: str = "ran"
    file_mb: float | None = None
    runs: int | None = None
    min_ms: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    images_per_s: float | None = None
    gflops: float | None = None
    effective_gflops: float | None = None
    gflops_per_s: float | None = None
    peak: str | None = None
    peak_gflops_per_s: float | None = None
    peak_fraction: float | None = None
    miou: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        """The row in one line: "best.onnx cuda 512x512/8" (model, device, size/batch)."""
        return f"{self.model} {self.device} {self.size[0]}x{self.size[1]}/{self.batch}"

    def fail(self, reason: str) -> None:
        if self.status == "ran":
            self.status = "failed: " + reason_line(reason)


def reason_line(error: object) -> str:
    """The first line of an error, at most 400 characters, as one line."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else type(error).__name__
    return one_line(first[:400])


def read_metadata(path: Path) -> ModelMetadata:
    """A model file's tseg metadata, read without a session (to refuse bad files before any timing).

    Raises:
        TsegError: the file is missing, not an ONNX file, or has no (or bad) tseg metadata.
    """
    from tseg.runtime.model.onnx_file import read_model_file

    if not path.is_file():
        raise TsegError(f"model file not found: {path}" if not path.exists() else f"{path} is not a file")
    return ModelMetadata.from_props(read_model_file(path).props, source=str(path))


def load_eager_plugin():
    """:mod:`tseg.benchmarks.eager`, imported only now (it needs torch: the train extra).

    Raises:
        TsegError: torch or tseg.train is not installed.
    """
    try:
        from tseg.benchmarks import eager  # torch and tseg.train: only for a checkpoint's rows
    except ImportError as err:
        message = f"checkpoint needs PyTorch ({TRAIN_EXTRA}): {reason_line(err)}"
        raise TsegError(message, parameter="checkpoint") from None
    return eager


@dataclass
class Plan:
    """A row and how to run it: ``make`` builds the runner (:func:`build_runners`)."""

    row: Row
    make: Callable[[], Callable[[], object]]
    flops: Callable[[], FlopCount]
    runner: Callable[[], object] | None = None


def _onnx_plans(path: Path, meta: ModelMetadata, device: str, sizes, batches, threads, *, opened=None,
                bf16: bool = False) -> list[Plan]:
    """The rows of one model file on one device; one session for all of them (``opened``: one already open;
    ``bf16``: OpenVINO computing in bfloat16)."""
    from tseg.runtime.model.binding import BoundRunner
    from tseg.runtime.model.openvino import OpenVinoSettings
    from tseg.runtime.model.session import create_session
    from tseg.runtime.model.tensorrt import TensorrtSettings

    state: dict[str, object] = {}

    def session():
        if "error" in state:
            raise state["error"]
        if "runner" not in state:
            trt = TensorrtSettings(batch_size=max(batches)) if device == "tensorrt" else None
            ov = OpenVinoSettings(bf16=bf16) if device == "openvino" else None
            try:
                sess = opened if opened is not None else create_session(path, device=device, threads=threads,
                                                                        tensorrt=trt, openvino=ov)
            except TsegError as err:
                state["error"] = err
                raise
            state["runner"] = BoundRunner(sess, input_name=sess.get_inputs()[0].name,
                                          output_name=sess.get_outputs()[0].name)
        return state["runner"]

    flop_counts: dict[tuple[int, int], object] = {}

    def flops_at(size):
        if size not in flop_counts:
            flop_counts[size] = count_flops(path, height=size[0], width=size[1])
        return flop_counts[size]

    plans = []
    for size in row_sizes(meta, sizes):
        for batch in batches:
            row = Row(path.name, str(path), "openvino" if device == "openvino" else "onnxruntime",
                      "bf16" if bf16 else meta.precision, device, tuple(size), batch,
                      file_mb=os.path.getsize(path) / 1e6)

            def make(size=size, batch=batch):
                runner = session()
                x = np.random.default_rng(0).standard_normal((batch, 3, *size), dtype=np.float32)
                return lambda: runner.run(x)

            def flops(size=size, row=row):
                count = flops_at(tuple(size))
                if count.note:
                    row.notes.append(count.note)
                return count

            plans.append(Plan(row, make, flops))
    return plans


def _eager_plans(checkpoint: Path, device: str, sizes, batches, threads) -> list[Plan]:
    plugin = load_eager_plugin()
    state: dict[str, object] = {}

    def model():
        if "error" in state:
            raise state["error"]
        if "model" not in state:
            try:
                state["model"] = plugin.load_eager(checkpoint, device=device, threads=threads)
            except TsegError as err:
                state["error"] = err
                raise
        return state["model"]

    plans = []
    name = f"{checkpoint.name} (PyTorch eager)"
    for size in sizes:
        for batch in batches:
            row = Row(name, str(checkpoint), "pytorch", "fp32", device, tuple(size), batch,
                      file_mb=os.path.getsize(checkpoint) / 1e6)

            def make(size=size, batch=batch):
                return model().runner(size[0], batch)

            plans.append(Plan(row, make, lambda size=size: model().flops(size[0])))
    return plans


def row_sizes(meta: ModelMetadata, sizes) -> list[tuple[int, int]]:
    """The (height, width) sizes a model file's rows run at: ``sizes``, or else the model's own input size."""
    return [tuple(size) for size in sizes] or [meta.input_size]


def eager_sizes(metas: list[tuple[Path, ModelMetadata]], sizes) -> list[tuple[int, int]]:
    """The sizes the PyTorch eager rows run at: ``sizes``, or else each model file's own input size."""
    return [tuple(size) for size in sizes] or sorted({meta.input_size for _, meta in metas})


def plan_rows(metas: list[tuple[Path, ModelMetadata]], *, checkpoint: Path | None, sizes, batches, devices,
              threads, cpu_sessions: Mapping[Path, object] | None = None, bf16: bool = False) -> list[Plan]:
    """Every row, in table order: each model file on each device, then the eager rows.

    Args:
        metas: each model file and its metadata (:func:`read_metadata`).
        checkpoint: a checkpoint already checked, or None.
        sizes: (height, width) pairs; empty: each model's own input size.
        cpu_sessions: model file -> a session already open on the CPU (what its CPU rows time).
        bf16: each FP32 file also gets OpenVINO rows in bfloat16 (device "openvino").

    Raises:
        TsegError: an unknown device (before any timing).
    """
    unknown = [d for d in devices if d not in DEVICES]
    if unknown:
        raise TsegError(f"unknown device {unknown[0]!r}; valid: {', '.join(DEVICES)}")
    cpu_sessions = cpu_sessions or {}
    plans = []
    for path, meta in metas:
        for device in devices:
            opened = cpu_sessions.get(path) if device == "cpu" else None
            plans += _onnx_plans(path, meta, device, sizes, batches, threads, opened=opened)
            if bf16 and device == "openvino" and meta.precision == "fp32":
                plans += _onnx_plans(path, meta, device, sizes, batches, threads, bf16=True)
    if checkpoint is not None:
        for device in [d for d in devices if d in EAGER_DEVICES]:
            plans += _eager_plans(checkpoint, device, eager_sizes(metas, sizes), batches, threads)
    return plans
