"""tseg-infer: run an exported model over images or a COCO split."""

from __future__ import annotations

import json
from pathlib import Path

import click
from tseg.runtime.cli_errors import one_line_errors
from tseg.runtime.errors import TsegError
from tseg.runtime.labels import atomic_write_bytes
from tseg.runtime.metrics import format_scores
from tseg.runtime.predict import InferSettings, infer_coco, infer_paths
from tseg.runtime.session import DEVICES


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--model",
    "-m",
    required=True,
    type=click.Path(path_type=Path),
    help="ONNX model exported by tseg-export (its metadata gives classes, size, normalisation).",
)
@click.option(
    "--out",
    "-o",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for the palette PNG label maps (one per image, at the image's size).",
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
    "--device",
    type=click.Choice(DEVICES),
    default="auto",
    show_default=True,
    help="Execution provider; a GPU request that falls back to the CPU is reported.",
)
@click.option("--threads", type=click.IntRange(min=1), help="ONNX Runtime intra-op threads.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@one_line_errors
def main(paths, model, out, coco, data, evaluate, device, threads, quiet):
    """Segment PATHS (image files and folders) or a COCO split with an ONNX model.

    \b
    Examples:
      tseg-infer photos/ --model best.onnx --out labels/
      tseg-infer --coco data/val.json --model best.onnx --out pred/ --eval
    """
    settings = InferSettings(model=model, out=out, device=device, threads=threads, progress=not quiet)
    if coco is None:
        if not paths:
            raise TsegError("nothing to segment: give image files or folders, or --coco FILE")
        if evaluate or data:
            raise TsegError("--eval and --data need --coco")
        written = infer_paths(list(paths), settings=settings)
        click.echo(f"wrote {len(written)} label map(s) to {out}")
        return
    if paths:
        raise TsegError("give either PATHS or --coco, not both")
    result = infer_coco(coco, data_root=data, settings=settings, evaluate=evaluate)
    click.echo(f"wrote {result.num_images} label map(s) for {coco} to {out}")
    if result.scores is not None:
        click.echo(format_scores(result.scores, result.classes))
        report = {
            "miou": result.scores.miou,
            "pixel_accuracy": result.scores.pixel_accuracy,
            "iou": dict(zip(result.classes, result.scores.iou, strict=True)),
            "model": str(model),
            "coco": str(coco),
        }
        atomic_write_bytes(out / "eval.json", json.dumps(report, indent=2).encode())
        click.echo(f"scores saved to {out / 'eval.json'}")
