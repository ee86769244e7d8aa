"""tseg-export: checkpoint -> ONNX, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click

from tseg.runtime.cli_errors import OneLineCommand, cli_message, one_line_errors
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import MAX_BATCH_SIZE


class AgreementType(click.ParamType):
    """``0.999`` (FP32) or ``fp16=0.99,int8=0.9``, merged over the defaults."""

    name = "AGREEMENT"

    def convert(self, value, param, ctx):
        if isinstance(value, dict):
            return value
        from tseg.export.accuracy import parse_min_agreement

        try:
            return parse_min_agreement(value)
        except TsegError as err:
            self.fail(str(err).removeprefix("min_agreement: "), param, ctx)


class ExportCommand(OneLineCommand):
    """tseg-export CHECKPOINT --onnx; the older ``--onnx=CHECKPOINT`` spelling still parses.

    ``--onnx CHECKPOINT`` needs nothing: ``--onnx`` is a flag, so the path that follows it is
    the CHECKPOINT argument.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        spelled = []
        for arg in args:
            if arg.startswith("--onnx=") and arg != "--onnx=":
                spelled += ["--onnx", arg.removeprefix("--onnx=")]
            else:
                spelled.append(arg)
        return super().parse_args(ctx, spelled)


@click.command(cls=ExportCommand, context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option(
    "--onnx",
    "onnx_format",
    is_flag=True,
    help="Export to ONNX (the format tseg deploys; the default, as it is the only one).",
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
    "--precision",
    "precisions",
    default="fp32",
    show_default=True,
    help="Comma-separated precisions to write: fp32, fp16, int8 (NAME.onnx, NAME.fp16.onnx, NAME.int8.onnx)."
    " FP32 is always written: the others are made from it. bf16: judge the FP32 file as OpenVINO runs it in"
    " bfloat16 (tseg-infer --device openvino --bf16; needs tseg[openvino] and a CPU with BF16).",
)
@click.option("--train-json", default="train.json", show_default=True, help="Split INT8 calibrates on (with --data).")
@click.option(
    "--calib-images",
    default=64,
    show_default=True,
    type=click.IntRange(min=0),
    help="INT8: how many training images calibrate the activation ranges.",
)
@click.option(
    "--calib-method",
    type=click.Choice(["minmax", "entropy", "percentile"]),
    help="INT8 calibration method (default: the quantizer's, see the README).",
)
@click.option(
    "--int8-target",
    default="cpu",
    show_default=True,
    type=click.Choice(["cpu", "tensorrt"]),
    help="INT8 for ONNX Runtime's CPU kernels (uint8 activations, fastest on x86) or for TensorRT"
    " (signed symmetric activations; slow on a CPU).",
)
@click.option(
    "--keep-float",
    help="INT8: comma-separated op types or node names left in float ('none': quantize all;"
    " default: the quantizer's list).",
)
@click.option(
    "--max-miou-drop",
    default=0.01,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="With --data: a file whose val mIoU is lower than PyTorch's by more is rejected.",
)
@click.option(
    "--min-agreement",
    default="fp32=0.999,fp16=0.99,int8=0.95",
    show_default=True,
    type=AgreementType(),
    help="Argmax agreement with PyTorch each precision needs (a bare number sets FP32's);"
    " FP16/INT8 are judged on val images when --data is given.",
)
@click.option(
    "--triton",
    "triton_repo",
    type=click.Path(path_type=Path),
    help="Also add each file that passes to this Triton model repository (REPO/NAME/config.pbtxt,"
    " REPO/NAME/1/model.onnx); a new, empty or Triton repository folder, never overwritten.",
)
@click.option("--triton-name", help="Model name in the repository (one precision only; default: the file's stem).")
@click.option("--triton-max-batch", default=8, show_default=True, type=click.IntRange(0, MAX_BATCH_SIZE),
              help="Largest batch Triton's dynamic batcher forms (0: no batching).")
@click.option("--triton-device", default="gpu", show_default=True, type=click.Choice(["gpu", "cpu", "auto"]),
              help="Where Triton runs the model's instances.")
@click.option("--triton-trt-fp16", is_flag=True, help="Triton: ONNX Runtime's TensorRT accelerator in FP16.")
@one_line_errors
def main(checkpoint, onnx_format, out, data, val_json, parity_images, opset, simplify, precisions, train_json,
         calib_images, calib_method, int8_target, keep_float, max_miou_drop, min_agreement, triton_repo, triton_name,
         triton_max_batch, triton_device, triton_trt_fp16):
    """Export CHECKPOINT (a tseg-train best.pt or last.pt) to ONNX (dynamic batch, height and width)
    with tseg metadata.

    The file passes onnx.checker, and ONNX Runtime's logits are compared with
    PyTorch's on generated inputs at two sizes (and on --data images); with
    --precision fp16/int8 each file is judged the same way and, with --data, by its
    val mIoU against PyTorch's. The figures are printed and saved beside the model
    as .parity.json (keeping an earlier run's records of precisions not made again, while
    their files are unchanged); a file that fails is renamed .rejected.onnx and the exit code is 1.

    \b
    Examples:
      tseg-export runs/demo/best.pt --onnx --data ~/.cache/tseg/synthetic-...
      tseg-export runs/demo/best.pt --onnx --data DATA --precision fp32,fp16,int8
    """
    import sys

    del onnx_format  # ONNX is the only format: the flag is the card's spelling, and documents intent
    from tseg.export.precisions import PrecisionSettings, failure_line, parse_precisions

    settings = PrecisionSettings(
        precisions=parse_precisions(precisions),
        calib_images=calib_images,
        calib_method=calib_method,
        int8_target=int8_target,
        keep_float=_keep_float(keep_float),
        min_agreement=min_agreement,
        max_miou_drop=max_miou_drop,
        progress=sys.stderr.isatty(),
    )
    from tseg.export.pipeline import export_checkpoint

    triton = None
    if triton_repo is not None or triton_name or triton_trt_fp16:
        triton = _triton_plan(triton_repo, triton_name, checkpoint, out, data, settings.precisions,
                              max_batch_size=triton_max_batch, device=triton_device, tensorrt_fp16=triton_trt_fp16)
    result = export_checkpoint(
        checkpoint,
        out=out,
        data=data,
        val_json=val_json,
        train_json=train_json,
        parity_images=parity_images,
        opset=opset,
        simplify=simplify,
        precision=settings,
    )
    click.echo(f"wrote {result.onnx_path} (parity on {', '.join(result.report.providers)})")
    click.echo(result.report.summary())
    if len(result.verdicts) > 1 or data is not None:
        from tseg.export.accuracy import summary

        click.echo("\nper precision, against PyTorch" + (" (val split: every image)" if data is not None else ""))
        click.echo(cli_message(summary(result.verdicts)))  # its reasons name parameters: max_miou_drop=0.01
    for verdict in result.verdicts:
        if verdict.passed and verdict.path != str(result.onnx_path):
            click.echo(f"wrote {verdict.path}")
    kept = f" (kept the earlier {', '.join(result.kept)} records: their files are unchanged)" if result.kept else ""
    click.echo(f"parity report: {result.parity_path}{kept}")
    if triton is not None:
        from tseg.export.triton import write_triton_model

        for precision, path in result.files.items():
            folder = write_triton_model(path, triton_repo, name=triton["names"][precision], **triton["options"])
            click.echo(f"Triton model: {folder}")
    if not result.passed:
        raise click.ClickException(cli_message(failure_line(result.verdicts)))


def _triton_plan(repo: Path | None, name: str | None, checkpoint: Path, out: Path | None, data: Path | None,
                 precisions: tuple[str, ...], **options) -> dict:
    """The Triton model name of each precision, the repo and options checked before the export runs."""
    from tseg.export.accuracy import RUN_PRECISIONS
    from tseg.export.pipeline import check_export_paths, default_onnx_path
    from tseg.export.triton import check_triton_target, default_model_name
    from tseg.runtime.model.onnx_file import precision_path
    from tseg.runtime.paths import Output

    if repo is None:
        raise TsegError("--triton-name and --triton-trt-fp16 go with --triton REPO (the repository to write)")
    precisions = tuple(p for p in precisions if p not in RUN_PRECISIONS)  # bf16 has no file of its own
    if name is not None and len(precisions) > 1:
        raise TsegError(
            f"--triton-name names one model, but --precision makes {len(precisions)} files"
            f" ({', '.join(precisions)}): leave it out (each file gets its own stem as its name)"
        )
    check_export_paths(checkpoint, out, precisions=precisions, data=data,
                       extra=(Output("--triton", repo, folder=True),))  # all outputs apart, before any work
    base = out if out is not None else default_onnx_path(checkpoint)
    names = {p: name or default_model_name(precision_path(base, p)) for p in precisions}
    check_triton_target(repo, list(names.values()), **options)
    return {"names": names, "options": options}


def _keep_float(text: str | None) -> tuple[str, ...] | None:
    """--keep-float: None (the default list), () for 'none', else the names given."""
    if text is None:
        return None
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    return () if [n.lower() for n in names] == ["none"] else names


if __name__ == "__main__":
    main()
