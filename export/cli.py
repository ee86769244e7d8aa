"""tseg-export: checkpoint -> ONNX, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from tseg.runtime.cli_errors import OneLineCommand, one_line_errors


@click.command(cls=OneLineCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--onnx",
    "checkpoint",
    required=True,
    type=click.Path(path_type=Path),
    help="Checkpoint written by tseg-train (e.g. runs/RUN/best.pt) to export to ONNX.",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(path_type=Path),
    help="Output .onnx (default: beside the checkpoint, e.g. runs/RUN/best.onnx).",
)
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="Dataset root: its validation images join the parity check.",
)
@click.option("--val-json", default="val.json", show_default=True)
@click.option("--parity-images", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--opset", default=18, show_default=True, type=int)
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Simplify the graph with onnxslim.")
@click.option(
    "--min-agreement",
    default=0.999,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Argmax agreement with PyTorch each parity case needs; below it the exit code is 1.",
)
@one_line_errors
def main(checkpoint, out, data, val_json, parity_images, opset, simplify, min_agreement):
    """Export a checkpoint to ONNX (dynamic batch, height and width) with tseg metadata.

    The file passes onnx.checker, and ONNX Runtime's logits are compared with
    PyTorch's on generated inputs at two sizes (and on --data images); the
    figures are printed and saved beside the model as .parity.json.

    \b
    Example:
      tseg-export --onnx runs/demo/best.pt --data ~/.cache/tseg/synthetic-...
    """
    from tseg.export.pipeline import export_checkpoint

    result = export_checkpoint(
        checkpoint,
        out=out,
        data=data,
        val_json=val_json,
        parity_images=parity_images,
        opset=opset,
        simplify=simplify,
        min_agreement=min_agreement,
    )
    click.echo(f"wrote {result.onnx_path} (parity on {', '.join(result.report.providers)})")
    click.echo(result.report.summary())
    click.echo(f"parity report: {result.parity_path}")
    if not result.report.passed:
        raise click.ClickException(
            f"ONNX output disagrees with PyTorch: worst argmax agreement"
            f" {result.report.worst_agreement:.4%} < {min_agreement:.1%}"
        )


if __name__ == "__main__":
    main()
