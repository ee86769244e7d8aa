"""tseg-train: train a segmentation model on a COCO-layout dataset."""

from __future__ import annotations

from pathlib import Path

import click

from tseg.runtime.cli_errors import one_line_errors
from tseg.train.settings import DEFAULT_MODEL, TrainSettings


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Dataset root (competition layout). Default: the built-in synthetic dataset.",
)
@click.option(
    "--train-json", default="train.json", show_default=True, help="Training split, relative to --data."
)
@click.option(
    "--val-json", default="val.json", show_default=True, help="Validation split, relative to --data."
)
@click.option(
    "--model", default=DEFAULT_MODEL, show_default=True, help="Architecture name from the model registry."
)
@click.option(
    "--backbone-weights",
    help="Backbone initialisation: 'imagenet' (torchvision's weights, cached or downloaded)"
    " or a path to a .pth state dict. Default: random.",
)
@click.option(
    "--size", default=256, show_default=True, type=int, help="Training size: images resized to SIZE x SIZE."
)
@click.option("--epochs", default=10, show_default=True, type=int)
@click.option("--batch-size", default=8, show_default=True, type=int)
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate.")
@click.option(
    "--name", default="run", show_default=True, help="Run name: the folder is runs/NAME (never overwritten)."
)
@click.option("--runs-dir", default="runs", show_default=True, type=click.Path(path_type=Path))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--workers", default=0, show_default=True, type=int, help="DataLoader worker processes.")
@click.option(
    "--cache/--no-cache",
    default=True,
    show_default=True,
    help="Keep decoded, resized images in memory after the first epoch.",
)
@click.option("--hflip/--no-hflip", default=True, show_default=True, help="Random horizontal flips.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--list-models", "show_models", is_flag=True, help="Print the model names and exit.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
@one_line_errors
def main(show_models: bool, quiet: bool, **options) -> None:
    """Train a model; writes runs/NAME with best.pt, last.pt, metrics.csv and settings.json.

    \b
    Examples:
      tseg-train --epochs 5 --name demo                 # built-in synthetic dataset
      tseg-train --data data/ --size 256 --batch-size 32 --epochs 40 --name v5
    """
    from tseg.train.models import list_models
    from tseg.train.trainer import train

    if show_models:
        click.echo("\n".join(list_models()))
        return
    train(TrainSettings(progress=not quiet, **options))
