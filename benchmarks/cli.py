"""``tseg-bench``: how fast, how accurate, how close to the machine's peak, and where the time goes.

    tseg-bench runs/demo/best.onnx runs/demo/best.int8.onnx --checkpoint runs/demo/best.pt \\
        --sizes 256,512 --coco val.json --data ROOT --stages --crf --markdown bench.md --html bench.html

A thin click wrapper over :func:`run_bench`, which tests call in-process. Importing this module
imports neither torch nor tseg.train: ``--checkpoint`` loads the eager plugin only when given.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import click

from tseg.benchmarks import checks
from tseg.benchmarks.measure import build_runners, measure_rows
from tseg.benchmarks.report import BenchReport, failure_lines, format_json, format_markdown, format_text
from tseg.benchmarks.rows import DEVICES, eager_sizes, plan_rows, read_metadata, row_sizes
from tseg.benchmarks.stats import TimingPolicy
from tseg.runtime.cli_errors import OneLineCommand, one_line_errors
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.model.metadata import MAX_BATCH_SIZE, MAX_INPUT_SIDE
from tseg.runtime.model.session import MAX_THREADS


def parse_int_list(text: str, *, option: str, low: int, high: int) -> tuple[int, ...]:
    """'256,512' -> (256, 512).

    Raises:
        TsegError: an item that is not an integer in [low, high], or nothing at all.
    """
    items = [item.strip() for item in text.split(",")]
    need = f"comma-separated integers in {low}..{high} (e.g. {low if low > 1 else 1},{min(high, 512)})"
    if not items or not all(item.isascii() and item.isdigit() and len(item) < 7 for item in items):
        raise TsegError(f"{option}: need {need}, got {text!r:.60}")
    values = tuple(int(item) for item in items)
    bad = [v for v in values if not low <= v <= high]
    if bad:
        raise TsegError(f"{option}: need {need}, got {bad[0]}")
    return tuple(dict.fromkeys(values))


def parse_devices(text: str) -> tuple[str, ...]:
    """'cpu,cuda' -> ('cpu', 'cuda'). Raises TsegError naming the valid devices."""
    devices = tuple(dict.fromkeys(item.strip() for item in text.split(",")))
    unknown = [d for d in devices if d not in DEVICES]
    if unknown:
        raise TsegError(f"--device: unknown device {unknown[0]!r:.40}; valid: {', '.join(DEVICES)} (comma-separated)")
    return devices


@dataclass(frozen=True)
class BenchSettings:
    """What to benchmark and how (built by the CLI; tests build it directly).

    Attributes:
        models: .onnx files exported by tseg-export.
        checkpoint: a tseg-train checkpoint for the PyTorch eager rows, or None.
        sizes: square input sizes; () = each model's own input size.
        batch_sizes: images per run.
        devices: of :data:`~tseg.benchmarks.rows.DEVICES`.
        threads: intra-op threads (ONNX Runtime and torch); None: their defaults.
        policy: warm-up, minimum runs and time.
        coco, data: a COCO split (and its image root) to score each row's mIoU on, or None.
        bf16: OpenVINO rows in bfloat16 too, for each FP32 file (device "openvino").
        stages: also time tseg-infer's pipeline stage by stage.
        crf: also time the dense CRF at each size.
        progress: a progress bar on stderr.
    """

    models: tuple[Path, ...]
    checkpoint: Path | None = None
    sizes: tuple[int, ...] = ()
    batch_sizes: tuple[int, ...] = (1,)
    devices: tuple[str, ...] = ("cpu",)
    threads: int | None = None
    policy: TimingPolicy = TimingPolicy()
    coco: Path | None = None
    data: Path | None = None
    bf16: bool = False
    stages: bool = False
    crf: bool = False
    progress: bool = False


def _check_settings(settings: BenchSettings) -> None:
    """Refuses settings that do not make a benchmark (before any file is read)."""
    if not settings.models and settings.checkpoint is None:
        raise TsegError("need at least one MODEL.onnx (or --checkpoint)")
    if (settings.stages or settings.crf) and not settings.models:
        raise TsegError("--stages and --crf time a MODEL.onnx (its pipeline, its class count): give one")
    if settings.bf16 and "openvino" not in settings.devices:
        raise TsegError("--bf16 adds OpenVINO rows in bfloat16: give --device openvino (e.g. --device cpu,openvino)")
    if settings.data is not None and settings.coco is None:
        raise TsegError("--data is the image root of --coco: give --coco SPLIT.json too")
    checks.check_threads(settings.threads)


def _check_inputs(settings: BenchSettings) -> tuple[list, dict]:
    """Everything refused before any timing, one line each: the models' metadata, the checkpoint, the
    split's classes, sizes each engine takes, one batch's memory, and each model opened as tseg-infer opens it.

    Returns:
        (each model file and its metadata, each model file's CPU session).
    """
    metas = [(path, read_metadata(path)) for path in settings.models]
    checkpoint = settings.checkpoint
    eager_classes = checks.check_checkpoint(checkpoint) if checkpoint is not None else None
    if settings.coco is not None:
        from tseg.benchmarks.accuracy import check_split

        named = {f"the model {path.name}": meta.classes for path, meta in metas}
        if eager_classes is not None:
            named[f"the checkpoint {checkpoint.name}"] = eager_classes
        checks.check_split_classes(check_split(settings.coco, settings.data), named)
    sizes = [(s, s) for s in settings.sizes]
    checks.check_sizes(metas, checkpoint=checkpoint, sizes=sizes, devices=settings.devices)
    shapes = [(path.name, size, batch, meta.num_classes)
              for path, meta in metas for size in row_sizes(meta, sizes) for batch in settings.batch_sizes]
    if eager_classes is not None:
        shapes += [(checkpoint.name, size, batch, len(eager_classes))
                   for size in eager_sizes(metas, sizes) for batch in settings.batch_sizes]
    checks.check_batch_memory(shapes, memory=checks.physical_memory())
    return metas, checks.open_models(settings.models, threads=settings.threads)


def run_bench(settings: BenchSettings) -> BenchReport:
    """Checks, plans, measures and scores every row (and the --stages / --crf sections).

    Raises:
        TsegError: bad input, all found before any timing (missing model, a file without tseg
            metadata or that does not open, an unknown device, threads beyond the CPUs, a split
            that cannot be scored or has another class count, sizes an engine cannot take, a
            batch larger than the machine's memory, torch missing for --checkpoint, a device
            that does not load, a row that fails its first run). What fails later (a run while
            timing, the --coco scoring, a --stages or --crf row) is a failed row:
            :func:`~tseg.benchmarks.report.failure_lines` lists them.
    """
    from tseg.benchmarks.machine import load_warning, machine_info

    _check_settings(settings)
    metas, cpu_sessions = _check_inputs(settings)
    plans = plan_rows(metas, checkpoint=settings.checkpoint, sizes=[(s, s) for s in settings.sizes],
                      batches=list(settings.batch_sizes), devices=list(settings.devices), threads=settings.threads,
                      cpu_sessions=cpu_sessions, bf16=settings.bf16)
    build_runners(plans)  # every row opened and run once: what cannot run is refused here, before any timing
    machine = machine_info(threads=settings.threads, devices=settings.devices)
    warning = load_warning(machine)
    if warning:
        click.echo(warning, err=True)
    measured = measure_rows(plans, policy=settings.policy, threads=settings.threads, progress=settings.progress)
    peaks = {f"{kind} GEMM on {device}": value for (kind, device), value in measured.peaks.items()}
    gemms = {f"{kind} GEMM on {device}": lines for (kind, device), lines in measured.peak_gemms.items()}
    report = BenchReport(measured.rows, machine, settings.policy, peaks, gemms)
    if settings.coco is not None:
        from tseg.benchmarks.accuracy import score_rows

        score_rows(measured.rows, coco=settings.coco, data=settings.data, threads=settings.threads)
    if settings.stages or settings.crf:
        from tseg.benchmarks.stages import add_sections

        add_sections(report, settings)
    return report


def check_report_paths(settings: BenchSettings, *, json_path: Path | None, markdown_path: Path | None,
                       html_path: Path | None = None) -> None:
    """Refuses, before any timing, a report path that is an input (model, checkpoint, split) or lies in the data."""
    from tseg.runtime.paths import Input, Output, check_outputs

    inputs = [Input("MODEL", m) for m in settings.models]
    if settings.checkpoint is not None:
        inputs.append(Input("--checkpoint", settings.checkpoint))
    if settings.coco is not None:
        root = settings.data if settings.data is not None else settings.coco.parent
        inputs += [Input("--coco", settings.coco), Input("--data", root, folder=True)]
    reports = [("--json", json_path), ("--markdown", markdown_path), ("--html", html_path)]
    check_outputs([Output(option, path) for option, path in reports if path is not None], inputs)


def _write_report(path: Path, text: str) -> None:
    """Writes a report atomically, making its folder first (checked up front by check_report_paths)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--checkpoint", type=click.Path(path_type=Path), help="A tseg-train checkpoint: PyTorch eager rows.")
@click.option("--sizes", default=None, help="Square input sizes, e.g. 256,512 (default: each model's own).")
@click.option("--batch-sizes", default="1", show_default=True, help="Images per run, e.g. 1,8.")
@click.option("--device", "devices", default="cpu", show_default=True, help=f"Comma-separated: {', '.join(DEVICES)}.")
@click.option("--threads", type=click.IntRange(1, MAX_THREADS), default=None,
              help=f"Intra-op threads, at most the CPUs ({MAX_THREADS}) (default: ORT's).")
@click.option("--coco", type=click.Path(path_type=Path), default=None, help="A COCO split to score mIoU on.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="The split's image root.")
@click.option("--bf16", is_flag=True, help="With --device openvino: also OpenVINO in bfloat16 for each FP32 file.")
@click.option("--stages", is_flag=True, help="Time tseg-infer's pipeline stage by stage.")
@click.option("--crf", is_flag=True, help="Time the dense CRF at each size (and pydensecrf's, if installed).")
@click.option("--json", "json_path", type=click.Path(path_type=Path), default=None, help="Write JSON here.")
@click.option("--markdown", "markdown_path", type=click.Path(path_type=Path), default=None, help="Write Markdown.")
@click.option("--html", "html_path", type=click.Path(path_type=Path), default=None,
              help="Write a self-contained HTML page: the table, charts and the machine.")
@click.option("--min-time", type=click.FloatRange(0, 3600), default=2.0, show_default=True,
              help="Seconds of timed runs per row, at least.")
@click.option("--min-runs", type=click.IntRange(1, 100000), default=10, show_default=True,
              help="Timed runs per row, at least.")
@click.option("--warmup", type=click.IntRange(0, 1000), default=2, show_default=True, help="Untimed runs first.")
@click.option("--pause", type=click.FloatRange(0, 60), default=0.2, show_default=True,
              help="Untimed seconds before each turn (the previous row's idle threads stop spinning).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="A progress bar on stderr.")
@click.option("--verbose", "-v", is_flag=True, help="Also show ONNX Runtime's own warnings and errors on stderr.")
@one_line_errors
def main(models, checkpoint, sizes, batch_sizes, devices, threads, coco, data, bf16, stages, crf, json_path,
         markdown_path, html_path, min_time, min_runs, warmup, pause, progress, verbose) -> None:
    """Benchmark exported models (MODEL.onnx ...): latency, images/s, FLOPs, % of peak, mIoU."""
    if verbose:
        from tseg.runtime.model.session import set_engine_logging

        set_engine_logging(verbose=True)
    settings = BenchSettings(
        models=tuple(models),
        checkpoint=checkpoint,
        sizes=parse_int_list(sizes, option="--sizes", low=1, high=MAX_INPUT_SIDE) if sizes is not None else (),
        batch_sizes=parse_int_list(batch_sizes, option="--batch-sizes", low=1, high=MAX_BATCH_SIZE),
        devices=parse_devices(devices),
        threads=threads,
        policy=TimingPolicy(warmup=warmup, min_runs=min_runs, min_time=min_time, pause=pause),
        coco=coco,
        data=data,
        bf16=bf16,
        stages=stages,
        crf=crf,
        progress=progress and sys.stderr.isatty(),
    )
    check_report_paths(settings, json_path=json_path, markdown_path=markdown_path, html_path=html_path)
    report = run_bench(settings)
    click.echo(format_text(report), nl=False)
    if json_path is not None:
        _write_report(json_path, format_json(report))
    if markdown_path is not None:
        _write_report(markdown_path, format_markdown(report))
    if html_path is not None:
        from tseg.benchmarks.report_html import format_html

        _write_report(html_path, format_html(report))
    failed = failure_lines(report)
    if failed:  # a benchmark whose rows could not run is a failed run: each row on stderr, then one Error line
        for line in failed:
            click.echo(f"failed: {line}", err=True)
        total = len(report.rows) + sum(len(table) for _, table, _ in report.sections.values())
        raise TsegError(f"{len(failed)} of {total} benchmark rows failed (each named above)")
