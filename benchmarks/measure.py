"""One row per (model file or PyTorch eager, precision, device, size, batch), measured interleaved.

Each ONNX row opens the file with :func:`~tseg.runtime.model.session.create_session` (the device's
provider or a one-line refusal, never a silent CPU fallback) and times one batch of random
(batch, 3, size, size) float32 input through :class:`~tseg.runtime.model.binding.BoundRunner`,
as ``tseg-infer`` runs its batches (IOBinding on a GPU: input copied in, logits copied out,
both timed). All rows and the GEMM peaks take turns (:func:`~tseg.benchmarks.stats.interleave`).

The PyTorch eager row comes from :mod:`tseg.benchmarks.eager`, imported only when a checkpoint
is given: tseg-bench runs on the runtime alone (no torch) otherwise.

Contention: PyTorch's CPU kernels run on an OpenMP team whose threads spin-wait at every
barrier; when another process holds one of the cores, each barrier waits for a descheduled
thread, and an eager forward that takes 33 ms on an idle 2-core machine takes 1-2.5 s
(measured: ONNX Runtime's pool degrades gracefully, torch's does not). tseg-bench keeps
PyTorch's defaults (what a user's PyTorch does) and flags such a row instead: a row whose
p50 is :data:`SPREAD_WARNING` times its fastest run gets a note.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tseg.benchmarks import machine
from tseg.benchmarks.flops import FlopCount, count_flops
from tseg.benchmarks.machine import PeakRunner, peak_folder, peak_kind
from tseg.benchmarks.stats import TimingPolicy, interleave, summarize
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


# A row whose median run is this many times its fastest was slowed by something else on the machine.
SPREAD_WARNING = 3.0


@dataclass
class Measured:
    """What :func:`measure_rows` found.

    Attributes:
        rows: the rows, in table order.
        peaks: (kind, device) -> the best GEMM's GFLOP/s, or a note why there is none.
        peak_gemms: (kind, device) -> each GEMM timed for it, "OP MxKxN: GFLOP/s" (or why it failed).
    """

    rows: list[Row]
    peaks: dict[tuple[str, str], float | str]
    peak_gemms: dict[tuple[str, str], list[str]] = field(default_factory=dict)


def build_runners(plans: list[Plan]) -> None:
    """Builds each row's runner (its session or eager model, its input) and runs it once, before any timing.

    What fails here fails every time (a device whose provider does not load, a model that
    cannot run at that size or batch), so it is bad input, refused in one line, not a row.

    Raises:
        TsegError: the first row that cannot run, named, and why.
    """
    for plan in plans:
        if plan.runner is not None:
            continue
        try:
            runner = plan.make()
            runner()
        except TsegError as err:
            raise TsegError(f"{plan.row.where}: {reason_line(err)}") from None
        except Exception as err:  # onnxruntime's and torch's own errors (a kernel missing, out of memory)
            raise TsegError(f"{plan.row.where}: {type(err).__name__}: {reason_line(err)}") from None
        plan.runner = runner


def measure_rows(plans: list[Plan], *, policy: TimingPolicy, threads: int | None, progress: bool = False) -> Measured:
    """Builds every runner (:func:`build_runners`), then times rows and GEMM peaks interleaved; fills in the figures.

    A row whose run fails while it is timed is a failed row (``status`` says why).

    Args:
        progress: a progress bar on stderr (rows and peaks done).

    Raises:
        TsegError: a row that cannot run at all (:func:`build_runners`).
    """
    from tqdm import tqdm

    build_runners(plans)
    with peak_folder() as folder:
        peaks: dict[tuple[str, str], float | str] = {}
        peak_gemms: dict[tuple[str, str], list[str]] = {}
        peak_runners: list[PeakRunner] = []
        for key in dict.fromkeys(peak_kind(p.row.precision, p.row.device) for p in plans):
            for op, shape in machine.peak_gemms(*key):
                try:
                    peak_runners.append(machine.make_peak_runner(*key, op=op, shape=shape, threads=threads,
                                                                 folder=Path(folder)))
                except Exception as err:  # TsegError, or ONNX Runtime without this GEMM kernel
                    name = f"{op} {'x'.join(map(str, shape))}"
                    peak_gemms.setdefault(key, []).append(f"{name}: failed ({reason_line(err)})")
        runners = [p.runner for p in plans] + [r.run for r in peak_runners]
        with tqdm(total=len(runners), desc="tseg-bench", unit="row", disable=not progress, leave=False) as bar:
            samples = interleave(runners, policy=policy, on_done=lambda _index: bar.update())
    peaks = _best_peaks(peak_runners, samples[len(plans):], peaks, peak_gemms)
    for plan, result in zip(plans, samples[: len(plans)], strict=True):
        if result.error is not None:
            plan.row.fail(f"{type(result.error).__name__}: {reason_line(result.error)}")
            continue
        _fill(plan, summarize(result.durations, batch=plan.row.batch), peaks)
    return Measured([p.row for p in plans], peaks, peak_gemms)


def _best_peaks(runners: list[PeakRunner], samples, peaks: dict, gemms: dict[tuple[str, str], list[str]]) -> dict:
    """Each (kind, device)'s peak: the fastest GEMM's GFLOP/s over its fastest run (the hardware's best
    when nothing else gets in the way). Every GEMM goes into ``gemms`` with its figure or why it failed."""
    for runner, result in zip(runners, samples, strict=True):
        key = (runner.kind, runner.device)
        if result.error is not None:
            gemms.setdefault(key, []).append(f"{runner.describe()}: failed ({reason_line(result.error)})")
            continue
        rate = runner.flops / min(result.durations) / 1e9
        gemms.setdefault(key, []).append(f"{runner.describe()}: {rate:.0f}")
        if not isinstance(peaks.get(key), float) or rate > peaks[key]:
            peaks[key] = rate
    for key, lines in gemms.items():
        if key not in peaks:
            peaks[key] = f"peak unavailable ({key[0]} GEMM on {key[1]}): every GEMM failed, e.g. {lines[0]}"
    return peaks


def _fill(plan: Plan, summary, peaks) -> None:
    row = plan.row
    row.runs, row.images_per_s, row.min_ms = summary.runs, summary.images_per_s, summary.min_ms
    row.p50_ms, row.p90_ms, row.p99_ms = summary.p50_ms, summary.p90_ms, summary.p99_ms
    if summary.p50_ms > SPREAD_WARNING * summary.min_ms:
        row.notes.append(
            f"{row.model} {row.size[0]}x{row.size[1]}/{row.batch}: p50 {summary.p50_ms:.0f} ms is"
            f" {summary.p50_ms / summary.min_ms:.0f}x its fastest run ({summary.min_ms:.1f} ms): something else"
            " competed for the CPUs (PyTorch's OpenMP threads, which spin-wait at every barrier, suffer most);"
            " rerun on an idle machine"
        )
    try:
        count = plan.flops()
    except Exception as err:  # the flop counter must not lose a measured row
        count = FlopCount(None)
        row.notes.append(f"FLOPs unavailable: {reason_line(err)}")
    if count.flops is None:
        return
    effective = count.flops if count.effective is None else count.effective
    row.gflops, row.effective_gflops = count.flops / 1e9, effective / 1e9
    row.gflops_per_s = effective * row.batch / (summary.p50_ms / 1e3) / 1e9
    if effective < 0.9 * count.flops:
        row.notes.append(
            f"at {row.size[0]}x{row.size[1]}: {100 * (1 - effective / count.flops):.0f}% of the"
            f" {count.flops / 1e9:.2f} GFLOPs/img counted are convolution taps on zero padding (dilated"
            " convolutions wider than their feature map), which the kernels skip; GFLOP/s and % peak count the"
            f" {effective / 1e9:.2f} GFLOPs on real input"
        )
    kind, device = peak_kind(row.precision, row.device)
    row.peak = f"{kind} GEMM on {device}"
    peak = peaks.get((kind, device))
    if isinstance(peak, float):
        row.peak_gflops_per_s = peak
        row.peak_fraction = row.gflops_per_s / peak
    elif isinstance(peak, str):
        row.notes.append(peak)
