"""tseg-train and tseg-plot: train a segmentation model; draw its curves."""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from tseg.runtime.cli_errors import OneLineCommand, one_line_errors
from tseg.runtime.errors import TsegError
from tseg.train.settings import DEFAULT_MODEL, TrainSettings


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Dataset root (competition layout). Default: the built-in synthetic dataset.",
)
@click.option("--train-json", default="train.json", show_default=True, help="Training split, relative to --data.")
@click.option("--val-json", default="val.json", show_default=True, help="Validation split, relative to --data.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Architecture (see --list-models).")
@click.option("--backbone-weights", help="'imagenet' (torchvision's weights, cached or downloaded) or a .pth path.")
@click.option("--size", default=256, show_default=True, type=int, help="Training size: images resized to SIZE x SIZE.")
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option(
    "--batch-size",
    default=8,
    show_default=True,
    type=int,
    help="Global batch (split over torchrun processes).",
)
@click.option("--accumulate", default=1, show_default=True, type=int, help="Micro-batches per optimizer step.")
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Peak learning rate.")
@click.option(
    "--lr-schedule",
    default="constant",
    show_default=True,
    help="constant, warmup-cosine, warmup-poly (power 0.9) or warmup-step; stepped per iteration.",
)
@click.option("--warmup-steps", default=0, show_default=True, type=int, help="Linear warm-up from 0 to --lr, in steps.")
@click.option("--warmup-epochs", default=0.0, show_default=True, type=float, help="Warm-up in epochs instead.")
@click.option("--min-lr", default=0.0, show_default=True, type=float, help="Where the decay ends.")
@click.option("--optimizer", default="adam", show_default=True, help="adam, adamw or sgd.")
@click.option("--weight-decay", default=0.0, show_default=True, type=float)
@click.option("--momentum", default=0.9, show_default=True, type=float, help="SGD momentum.")
@click.option(
    "--class-weights",
    default="none",
    show_default=True,
    help="Cross-entropy weights: none, balanced (median frequency) or one number per class, comma-separated.",
)
@click.option("--ignore-index", default=255, show_default=True, type=int, help="Label left out of loss and metrics.")
@click.option("--hflip/--no-hflip", default=True, show_default=True, help="Random horizontal flips.")
@click.option(
    "--scale-aug",
    "scale_range",
    nargs=2,
    type=float,
    default=None,
    help="Random rescale in [MIN, MAX] then a random crop, e.g. --scale-aug 0.5 2.0.",
)
@click.option("--color-jitter", default=0.0, show_default=True, type=float, help="Colour jitter strength (0: off).")
@click.option("--amp", is_flag=True, help="Mixed precision: bf16 on the CPU, fp16 with a GradScaler on CUDA.")
@click.option("--channels-last/--no-channels-last", default=True, show_default=True)
@click.option("--sync-bn", is_flag=True, help="SyncBatchNorm across torchrun processes.")
@click.option(
    "--bn-momentum", type=float, help="BatchNorm running-stat momentum (e.g. 0.1 for short runs from scratch)."
)
@click.option("--name", default="run", show_default=True, help="Run name: the folder is runs/NAME (never overwritten).")
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=0, show_default=True, type=int, help="DataLoader worker processes.")
@click.option(
    "--cache/--no-cache",
    default=False,
    show_default=True,
    help="Decode and resize the dataset once into uint8 memmaps (under ~/.cache/tseg/decoded).",
)
@click.option("--tensorboard", is_flag=True, help="Also log to TensorBoard in runs/NAME/tensorboard.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu or cuda.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue runs/RUN exactly where it stopped.")
@click.option("--list-models", "show_models", is_flag=True, help="Print the model names and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@click.option(
    "--max-image-pixels",
    metavar="N|none",
    help="Refuse dataset images of more pixels than N, a decompression-bomb guard (default: Pillow's 89478485;"
    " 'none': no limit; also TSEG_MAX_IMAGE_PIXELS).",
)
@one_line_errors
def main(show_models: bool, quiet: bool, resume: Path | None, max_image_pixels: str | None, **options) -> None:
    """Train a model; writes runs/NAME with best.pt, last.pt, metrics.csv, lr.csv, settings.json, plots/.

    \b
    Examples:
      tseg-train --epochs 5 --name demo                 # built-in synthetic dataset
      tseg-train --data data/ --size 256 --batch-size 32 --epochs 40 --lr-schedule warmup-cosine \\
                 --warmup-epochs 1 --name v5
      tseg-train --resume runs/v5                       # after a crash or Ctrl-C
      torchrun --nproc_per_node 4 -m tseg.train.cli --data data/ --batch-size 64 --name ddp
    """
    from tseg.runtime.pixel_limit import pixel_limit_option

    if show_models:
        from tseg.train.models import list_models

        click.echo("\n".join(list_models()))
        return
    ctx = click.get_current_context()
    given = {n for n in options if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE}
    if resume is not None:
        if given:
            flags = sorted(p.opts[0] for p in ctx.command.params if p.name in given)
            raise TsegError(f"--resume continues a run with its saved settings; drop {', '.join(flags)}")
    elif "momentum" in given and options["optimizer"] != "sgd":
        raise TsegError(f"--momentum applies to --optimizer sgd only, not {options['optimizer']!r}; drop it")
    settings = TrainSettings(progress=not quiet, **options)  # defaults when resuming: only progress is used
    from tseg.train.trainer import train  # after the checks: a bad setting fails before torch loads

    with pixel_limit_option(max_image_pixels, what="--max-image-pixels"):
        train(settings, resume=resume, report=click.echo)


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="Folder for the PNG charts.")
@one_line_errors
def plot_main(runs: tuple[Path, ...], out: Path) -> None:
    """Draw the LR schedule, train/val loss and train/val mIoU of RUNS, one colour per run."""
    from tseg.train.plots import check_plot_out, plot_runs

    check_plot_out(out, runs)
    for path in plot_runs(runs, out=out):
        click.echo(f"wrote {path}")


if __name__ == "__main__":
    main()
