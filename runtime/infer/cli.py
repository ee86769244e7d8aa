"""tseg-infer: run an exported model over images or a COCO split (optionally with a dense CRF)."""

from __future__ import annotations

import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import click
from tqdm import tqdm

from tseg.runtime import pixel_limit
from tseg.runtime.cli_errors import OneLineCommand, one_line_errors
from tseg.runtime.data.metrics import format_scores
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.infer.combinations import CRF_FLAGS, check_combinations, given_options
from tseg.runtime.infer.defaults import RUNS_DIR, new_infer_dir, newest_model
from tseg.runtime.infer.pipeline import MAX_WORKERS
from tseg.runtime.infer.run import EVAL_FILE, CocoInferResult, InferResult, InferSettings, infer_coco, infer_paths
from tseg.runtime.infer.stages import Failure
from tseg.runtime.model.metadata import MAX_BATCH_SIZE
from tseg.runtime.model.session import DEVICES, MAX_THREADS
from tseg.runtime.report.write import MAX_REPORT_IMAGES, ReportSettings
from tseg.runtime.segment.crf_device import CRF_DEVICES, require_cuda_crf
from tseg.runtime.segment.refine import MAX_ITERATIONS, crf_file_for, resolve_crf_params


def crf_options(func):
    """--crf-<parameter> flags; unset ones come from crf.json beside the model, else defaults."""
    for name in reversed(CRF_FLAGS):
        flag = "--crf-" + name.replace("_", "-")
        kind = click.IntRange(min=0, max=MAX_ITERATIONS) if name == "iterations" else float
        text = f"CRF {name.replace('_', ' ')} (with --crf or --crf-tune)."
        func = click.option(flag, name, type=kind, help=text)(func)
    return func


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    type=click.Path(path_type=Path),
    help="ONNX model exported by tseg-export (its metadata gives classes, size, normalisation)."
    " Default: the newest exported model under runs/.",
)
@click.option(
    "--out",
    "-o",
    type=click.Path(path_type=Path),
    help="Folder for the palette PNG label maps (one per image, at the image's size)."
    " Default: a new folder runs/infer/NAME.",
)
@click.option(
    "--coco",
    type=click.Path(path_type=Path),
    help="Segment the images listed in this COCO JSON instead of PATHS.",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Folder the COCO file names are relative to (default: the JSON's folder).",
)
@click.option(
    "--eval", "evaluate", is_flag=True, help="With --coco: print the mIoU against the JSON's annotations."
)
@click.option(
    "--crf",
    "use_crf",
    is_flag=True,
    help="Refine with a dense CRF at the image's size (parameters: flags, else crf.json beside the model).",
)
@crf_options
@click.option(
    "--crf-tune",
    is_flag=True,
    help="With --coco: grid-search the CRF on the split, print the table, write crf.json beside the model.",
)
@click.option(
    "--crf-device",
    type=click.Choice(CRF_DEVICES),
    default="auto",
    show_default=True,
    help="Where the CRF runs (with --crf or --crf-tune). cpu: Numba on the CPU; cuda: Numba's CUDA kernels on an"
    " NVIDIA GPU (pip install 'tseg[cuda]') or an error; auto: the GPU when the model runs on CUDA (--device cuda or"
    " tensorrt, or auto's choice) and the CUDA CRF can run there, else the CPU (a note on stderr names the choice).",
)
@click.option(
    "--tune-images",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Images used by --crf-tune.",
)
@click.option(
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Engine. cpu: ONNX Runtime on the CPU; cuda, tensorrt, openvino: that engine or an error; auto: CUDA when"
    " it loads, else OpenVINO on the CPU when installed, else ONNX Runtime on the CPU (a note on stderr names the"
    " choice). openvino runs the file in f32 (bf16 with --bf16; pip install 'tseg[openvino]')."
    " tensorrt builds an engine on first use (INT8 from an int8 file's Q/DQ scales, FP16 for an fp16 file)"
    " and caches it in $XDG_CACHE_HOME/tseg (default ~/.cache/tseg) for this model, GPU and TensorRT version.",
)
@click.option(
    "--trt-fp16",
    is_flag=True,
    help="With --device tensorrt: let TensorRT use FP16 kernels for an FP32 (or INT8) model.",
)
@click.option(
    "--bf16",
    is_flag=True,
    help="With --device openvino: compute in bfloat16 where the CPU has it (a precision change: check it with"
    " tseg-export's gate).",
)
@click.option("--threads", type=click.IntRange(min=1, max=MAX_THREADS),
              help="The engine's threads (ONNX Runtime's intra-op threads, OpenVINO's inference threads).")
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=click.IntRange(min=1, max=MAX_BATCH_SIZE),
    help="Images per model run.",
)
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(min=0, max=MAX_WORKERS),
    help="Threads decoding images and post-processing (CRF) beside the model; 0: one step at a time.",
)
@click.option("--fail-fast", is_flag=True, help="Stop at the first image that cannot be read or segmented.")
@click.option("--tta", type=click.Choice(["hflip", "none"]), help="Test-time augmentation: average with the mirror.")
@click.option(
    "--tta-scales",
    metavar="S1,S2,...",
    help="Test-time augmentation: average over the model input resized by each scale (e.g. 0.75,1,1.25).",
)
@click.option(
    "--overlay",
    type=click.Path(path_type=Path),
    help="Also write each image with its labels blended in (and a legend) to this folder, as JPEG.",
)
@click.option(
    "--report",
    type=click.Path(path_type=Path),
    help="With --coco and --eval: write an evaluation report to this folder (index.html opens from disk:"
    " scores with and without the CRF, IoU per class, the confusion matrix, the worst and best images).",
)
@click.option(
    "--report-images",
    default=6,
    show_default=True,
    type=click.IntRange(min=0, max=MAX_REPORT_IMAGES),
    help="With --report: how many of the worst and of the best images get pictures.",
)
@click.option(
    "--submission",
    type=click.Path(path_type=Path),
    help="With --coco: write the competition's CSV (one row per image, labels at 256x256) to this file.",
)
@click.option(
    "--score-submission",
    type=click.Path(path_type=Path),
    help="With --coco: score this submission CSV against the JSON's annotations (no model is run).",
)
@click.option(
    "--max-image-pixels",
    metavar="N|none",
    help="Refuse images of more pixels than N, a decompression-bomb guard (default: Pillow's 89478485;"
    " 'none': no limit; also TSEG_MAX_IMAGE_PIXELS).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--verbose", "-v", is_flag=True, help="Also show ONNX Runtime's own warnings and errors on stderr.")
@one_line_errors
def main(
    paths,
    model,
    out,
    coco,
    data,
    evaluate,
    use_crf,
    crf_tune,
    crf_device,
    tune_images,
    device,
    trt_fp16,
    bf16,
    threads,
    batch_size,
    workers,
    fail_fast,
    tta,
    tta_scales,
    overlay,
    report,
    report_images,
    submission,
    score_submission,
    max_image_pixels,
    quiet,
    verbose,
    **crf,
):
    """Segment PATHS (image files and folders) or a COCO split with an ONNX model.

    \b
    Examples:
      tseg-infer photos/ --crf                     # newest model under runs/, out: runs/infer/photos
      tseg-infer photos/ --model best.onnx --out labels/ --overlay pictures/
      tseg-infer --coco data/val.json --model best.onnx --out pred/ --eval --crf
      tseg-infer --coco data/val.json --model best.onnx --out pred/ --eval --crf --report report/
      tseg-infer --coco data/test.json --submission sub.csv       # the competition's CSV
      tseg-infer --coco data/val.json --submission val.csv
      tseg-infer --coco data/val.json --score-submission val.csv  # scored against the split it was made for
      tseg-infer --coco data/val.json --model best.onnx --crf-tune
      tseg-infer photos/ --model best.int8.onnx --device tensorrt   # or best.onnx --device tensorrt --trt-fp16
    """
    given = given_options(click.get_current_context())
    if verbose:
        from tseg.runtime.model.session import set_engine_logging

        set_engine_logging(verbose=True)
    check_combinations(command=main, given=given, has_paths=bool(paths), has_coco=coco is not None)
    if trt_fp16 and device != "tensorrt":
        raise TsegError(f"--trt-fp16 needs --device tensorrt (it sets TensorRT's FP16 mode), got --device {device}")
    if bf16 and device != "openvino":
        raise TsegError(f"--bf16 needs --device openvino (it sets OpenVINO's precision), got --device {device}")
    if crf_device == "cuda":
        require_cuda_crf()  # before any work
    crf = {**crf, "device": crf_device}
    if score_submission is not None:
        return _score_submission(score_submission, coco, data)
    with pixel_limit.pixel_limit_option(max_image_pixels, what="--max-image-pixels"):
        tta_settings = _parse_tta(tta, tta_scales, device)
        if model is None:
            model = newest_model(RUNS_DIR)
            click.echo(f"using the newest model under {RUNS_DIR}/: {model}", err=True)
        if crf_tune:
            return _tune(model, coco, data, crf, tune_images, device, threads, quiet, trt_fp16, bf16)
        params = resolve_crf_params(model, crf) if use_crf else None
        created = None
        if out is None:
            out = created = new_infer_dir(list(paths), coco, runs_dir=RUNS_DIR)
            click.echo(f"writing to {out}", err=True)
        settings = InferSettings(
            model=model,
            out=out,
            device=device,
            threads=threads,
            progress=not quiet,
            crf=params,
            batch_size=batch_size,
            workers=workers,
            fail_fast=fail_fast,
            tta=tta_settings,
            overlay=overlay,
            submission=submission,
            report=_report_settings(report, report_images),
            trt_fp16=trt_fp16,
            bf16=bf16,
        )
        try:
            _infer(paths, coco, data, evaluate, settings)
        except BaseException:
            if created is not None and created.is_dir() and not any(created.iterdir()):
                created.rmdir()  # nothing written: leave no empty run folder behind
            raise
    return None


def _report_settings(folder: Path | None, images: int) -> ReportSettings | None:
    if folder is None:
        return None
    return ReportSettings(folder=folder, images=images, command=shlex.join(["tseg-infer", *sys.argv[1:]]))


def _score_submission(csv: Path, coco: Path, data: Path | None) -> None:
    from tseg.runtime.data.coco import CocoDataset
    from tseg.runtime.data.submission import score_submission

    scores = score_submission(csv, coco, data_root=data)
    click.echo(f"{csv}: " + format_scores(scores, CocoDataset(coco, root=data).classes))


def _parse_tta(tta: str | None, tta_scales: str | None, device: str):
    """--tta and --tta-scales as TtaSettings (None: plain inference); scales device tensorrt cannot run
    are refused here, before the model loads, in the command's words."""
    if tta is None and tta_scales is None:
        return None
    from tseg.runtime.segment.segmenter import tensorrt_refused_scales
    from tseg.runtime.segment.tta import TtaSettings

    settings = TtaSettings.parse(tta, tta_scales)
    refused = tensorrt_refused_scales(settings)
    if device == "tensorrt" and refused:
        raise TsegError(
            f"TTA scale(s) {','.join(f'{s:g}' for s in refused)} with --device tensorrt: the TensorRT engine takes"
            " the model's input size only; use --tta hflip without --tta-scales, or --device cuda"
        )
    return settings


def _infer(paths, coco, data, evaluate, settings: InferSettings) -> None:
    """Runs tseg-infer's main work; exit 1 (one summary line) when any image failed."""
    out = settings.out
    if coco is None:
        result = infer_paths(list(paths), settings=settings, on_failure=_show_failure)
        _check_failures(result)
        click.echo(f"wrote {len(result.written)} label map(s) to {out}")
        return
    result = infer_coco(coco, data_root=data, settings=settings, evaluate=evaluate, on_failure=_show_failure)
    _check_failures(result)
    click.echo(f"wrote {result.num_images} label map(s) for {coco} to {out}")
    if result.submission is not None:
        click.echo(f"wrote the submission {result.submission}")
    if result.scores is not None:
        _report(result, model=settings.model, coco=coco, out=out, crf=result.crf)
    if result.report is not None:
        click.echo(f"report written to {result.report}")


def _show_failure(failure: Failure) -> None:
    """Shows ``failed: SOURCE: reason`` on stderr as it happens, above the progress bar."""
    tqdm.write(failure.line(), file=sys.stderr)


def _check_failures(result: InferResult | CocoInferResult) -> None:
    """Raises the run's summary (N written, M failed) when any image failed."""
    if not result.failures:
        return
    written = len(result.written) if isinstance(result.written, list) else result.written
    summary = f"{written} written, {len(result.failures)} failed (listed in {result.errors_file})"
    if result.stopped:
        summary = f"stopped at the first failure (--fail-fast): {summary}"
    raise TsegError(summary)


def _report(result: CocoInferResult, *, model: Path, coco: Path, out: Path, crf) -> None:
    click.echo("without CRF: " + format_scores(result.scores, result.classes))
    report = {
        "model": str(model),
        "coco": str(coco),
        "miou": result.scores.miou,
        "pixel_accuracy": result.scores.pixel_accuracy,
        "iou": dict(zip(result.classes, result.scores.iou, strict=True)),
    }
    if result.crf_scores is not None:
        click.echo("with CRF:    " + format_scores(result.crf_scores, result.classes))
        gain = result.crf_scores.miou - result.scores.miou
        click.echo(f"CRF mIoU {result.crf_scores.miou:.4f} vs {result.scores.miou:.4f} without ({gain:+.4f})")
        report.update(
            crf_miou=result.crf_scores.miou,
            crf_pixel_accuracy=result.crf_scores.pixel_accuracy,
            crf=asdict(crf),
            crf_iou=dict(zip(result.classes, result.crf_scores.iou, strict=True)),
        )
    atomic_write_bytes(out / EVAL_FILE, json.dumps(report, indent=2).encode())
    click.echo(f"scores saved to {out / EVAL_FILE}")


def _tune(model, coco, data, crf, tune_images, device, threads, quiet, trt_fp16, bf16) -> None:
    from tseg.runtime.data.coco import CocoDataset
    from tseg.runtime.infer.crf_tune import tune_crf
    from tseg.runtime.infer.run import check_classes
    from tseg.runtime.model.openvino import OpenVinoSettings
    from tseg.runtime.model.tensorrt import TensorrtSettings
    from tseg.runtime.paths import Input, Output, check_outputs
    from tseg.runtime.segment.segmenter import Segmenter

    base = resolve_crf_params(model, crf)
    dataset = CocoDataset(coco, root=data)
    target = crf_file_for(model)
    inputs = [Input("--coco", dataset.json_path), Input("--data", dataset.root, folder=True), Input("--model", model)]
    check_outputs([Output("--crf-tune's crf.json", target)], inputs)

    tensorrt = TensorrtSettings(fp16=trt_fp16) if device == "tensorrt" else None
    openvino = OpenVinoSettings(bf16=bf16) if device == "openvino" else None
    segmenter = Segmenter(model, device=device, threads=threads, tensorrt=tensorrt, openvino=openvino)
    check_classes(dataset, segmenter)  # before the costly search, not in its middle
    result = tune_crf(
        coco, data_root=data, segmenter=segmenter, base=base, max_images=tune_images, progress=not quiet
    )
    click.echo(f"CRF grid search on {result.num_images} image(s) of {coco}:")
    click.echo(result.table())
    best, miou = result.best
    best.save(target)
    click.echo(f"best mIoU {miou:.4f} (no CRF {result.baseline_miou:.4f}); wrote {target}")


if __name__ == "__main__":
    main()
