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

from dataclasses import dataclass, field
from pathlib import Path

from tseg.benchmarks import machine
from tseg.benchmarks.flops import FlopCount
from tseg.benchmarks.machine import PeakRunner, peak_folder, peak_kind
from tseg.benchmarks.rows import Plan, Row, reason_line
from tseg.benchmarks.stats import TimingPolicy, interleave, summarize
from tseg.runtime.errors import TsegError

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
