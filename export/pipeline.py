"""Checkpoint in, checked ONNX file and parity report out: what tseg-export runs."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from tseg.export.accuracy import GATED_PRECISIONS, RUN_PRECISIONS, PrecisionVerdict
from tseg.export.onnx import DEFAULT_OPSET, check_opset, export_onnx, metadata_for
from tseg.export.parity import ParityReport, parity_inputs
from tseg.export.precisions import PrecisionSettings, gated_file, judge, make_file, reject_failures
from tseg.export.records import kept_records, merged_report, read_report
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.model.onnx_file import precision_path, rejected_path
from tseg.runtime.model.openvino import check_bf16
from tseg.runtime.paths import Input, Output, check_outputs
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class ExportResult:
    """The files written and the verdict of each precision.

    Attributes:
        onnx_path: the FP32 file (always written: the other precisions are made from it).
        parity_path: the report of every precision (JSON).
        report: FP32's parity report against PyTorch.
        verdicts: one per precision of this run, in the order asked; a failed one's file
            was moved to its ``.rejected.onnx`` name.
        kept: the precisions whose earlier records the report kept (not made again by this
            run, their files unchanged; see :mod:`tseg.export.records`).
    """

    onnx_path: Path
    parity_path: Path
    report: ParityReport
    verdicts: tuple[PrecisionVerdict, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        """This run's files passed (the report's own ``passed`` also counts the kept records)."""
        return self.report.passed and all(v.passed for v in self.verdicts)

    @property
    def files(self) -> dict[str, Path]:
        """precision -> usable file (rejected ones are left out; bf16, which has no file of its own, too)."""
        return {v.precision: Path(v.path) for v in self.verdicts if v.passed and v.precision not in RUN_PRECISIONS}


def default_onnx_path(checkpoint: Path) -> Path:
    """runs/RUN/best.pt -> runs/RUN/best.onnx."""
    return checkpoint.with_suffix(".onnx")


def parity_report_path(onnx_path: Path) -> Path:
    """runs/RUN/best.onnx -> runs/RUN/best.parity.json."""
    return onnx_path.with_suffix(".parity.json")


def _provenance(checkpoint: Path, payload: dict) -> dict:
    """What the ONNX metadata records of its checkpoint: path, epoch, finite numeric metrics only."""
    epoch = payload.get("epoch")
    metrics = payload.get("metrics")
    return {
        "checkpoint": str(checkpoint),
        "epoch": epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
        "metrics": {
            key: float(value)
            for key, value in (metrics.items() if isinstance(metrics, dict) else ())
            if isinstance(key, str) and isinstance(value, (int, float)) and math.isfinite(value)
        },
    }


def check_export_paths(
    checkpoint: Path, out: Path | None, *, precisions: tuple[str, ...] = ("fp32",), data: Path | None = None,
    extra: tuple[Output, ...] = (),
) -> tuple[Path, Path]:
    """(ONNX path, parity report path), every output refused before any work if it would replace an input.

    Args:
        checkpoint: the input .pt.
        out: the FP32 .onnx path, or None for the default beside the checkpoint.
        precisions: the files this run writes (each precision's, and its ``.rejected.onnx`` name).
        data: the dataset root read for parity and calibration (nothing is written in it).
        extra: other outputs of the same command (tseg-export's Triton repository).

    Raises:
        TsegError: the checkpoint is missing; ``out`` does not end in .onnx; an output is the
            checkpoint (any spelling, link or hard link), lies in the data folder, or its place
            is taken by a folder, a link or a special file (see :func:`tseg.runtime.paths.check_outputs`).
    """
    if not checkpoint.is_file():
        raise TsegError(f"checkpoint not found: {checkpoint}")
    if out is None:
        if checkpoint.suffix.lower() == ".onnx":
            raise TsegError(
                f"out: none given, and the checkpoint {checkpoint} ends in .onnx, so the default output would"
                " replace it; give another .onnx path",
                parameter="out",
            )
        onnx_path = default_onnx_path(checkpoint)
    else:
        onnx_path = out
        if onnx_path.suffix.lower() != ".onnx":
            raise TsegError(f"out must be a path ending in .onnx, got {str(onnx_path)!r}", parameter="out")
    parity_path = parity_report_path(onnx_path)
    outputs = [Output("out", onnx_path), Output("the parity report", parity_path)]
    for precision in [p for p in precisions if p not in RUN_PRECISIONS]:
        path = precision_path(onnx_path, precision)
        if precision != "fp32":
            outputs.append(Output(f"the {precision.upper()} file", path))
        outputs.append(Output(f"the {precision.upper()} file's rejected name", rejected_path(path)))
    inputs = [Input("checkpoint", checkpoint)] + ([Input("data", data, folder=True)] if data is not None else [])
    check_outputs([*outputs, *extra], inputs)
    return onnx_path, parity_path


def _dataset(data: str | Path | None, split_json: str, *, what: str, option: str) -> CocoDataset | None:
    """The COCO split ``data/split_json``, or None without ``data``; ``option`` names ``split_json``'s parameter."""
    if data is None:
        return None
    if not Path(data).is_dir():
        raise TsegError(f"data folder not found: {data}", parameter="data")
    split = Path(data) / split_json
    if not split.is_file():
        raise TsegError(f"data {data} has no {what} split {split_json} ({option})", parameter="data")
    return CocoDataset(split, root=data)


def _check_int8_inputs(settings: PrecisionSettings, data, train_json: str) -> PrecisionSettings:
    """INT8 calibrates on the training split: refuse early what cannot give it images."""
    if "int8" not in settings.precisions:
        return settings
    if data is None:
        raise TsegError(
            "precision: int8 needs calibration images: give data='ROOT' (its training split is used,"
            f" train_json={train_json!r})",
            parameter="precision",
        )
    if settings.calib_images < 1:
        raise TsegError(
            f"calib_images must be >= 1 for int8 (its calibration images), got {settings.calib_images}",
            parameter="calib_images",
        )
    coco = _dataset(data, train_json, what="training", option="train_json")
    if len(coco) == 0:
        raise TsegError(
            f"precision: int8 needs calibration images, but {Path(data) / train_json} lists none", parameter="precision"
        )
    return dataclasses.replace(settings, calibration=coco)


def export_checkpoint(
    checkpoint: str | Path,
    *,
    out: str | Path | None = None,
    data: str | Path | None = None,
    val_json: str = "val.json",
    train_json: str = "train.json",
    parity_images: int = 8,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    min_agreement: float | None = None,
    precision: PrecisionSettings | None = None,
) -> ExportResult:
    """Exports a tseg checkpoint to ONNX in each precision, and checks every file against PyTorch.

    Args:
        checkpoint: a .pt written by tseg-train.
        out: the FP32 .onnx path (default: beside the checkpoint); the others go beside
            it as ``NAME.fp16.onnx`` and ``NAME.int8.onnx``.
        data: dataset root: its ``val_json`` images join the parity check and give each
            file's val mIoU; INT8 calibrates on its ``train_json`` images.
        val_json: the validation split.
        train_json: the training split (INT8 calibration).
        parity_images: how many val images join the per-image parity cases.
        opset: ONNX opset.
        simplify: run onnxslim on the graph.
        min_agreement: FP32's argmax agreement threshold (overrides ``precision``'s).
        precision: which precisions, INT8 calibration, thresholds (default: FP32 only).

    Returns:
        Paths, FP32's parity report and every precision's verdict; the report of all is
        saved as ``<out>.parity.json``, keeping an earlier run's record of each precision
        not made again whose file is unchanged. A file that fails its gate has been moved
        to its ``.rejected.onnx`` name. Check ``result.passed``.

    Raises:
        TsegError: bad paths or settings, or something at ``<out>.parity.json`` that is not
            a tseg parity report (all before any work).
    """
    settings = precision or PrecisionSettings()
    if min_agreement is not None:
        settings = dataclasses.replace(settings, min_agreement={**settings.min_agreement, "fp32": min_agreement})
    checkpoint = Path(checkpoint)
    onnx_path, parity_path = check_export_paths(
        checkpoint, Path(out) if out is not None else None, precisions=settings.precisions,
        data=Path(data) if data is not None else None,
    )
    files = {p: gated_file(onnx_path, p) for p in settings.precisions}
    val = _dataset(data, val_json, what="validation", option="val_json")
    settings = _check_int8_inputs(settings, data, train_json)
    if "bf16" in settings.precisions:
        check_bf16()  # OpenVINO installed, a CPU with BF16: before any work
    others = {p: gated_file(onnx_path, p) for p in GATED_PRECISIONS if p not in files}
    kept = kept_records(read_report(parity_path), {p: (path, rejected_path(path)) for p, path in others.items()})
    payload = load_checkpoint(checkpoint)
    model, spec = model_from_checkpoint(payload, source=str(checkpoint))
    check_opset(opset)  # after the checkpoint: its probe imports ONNX Runtime, which writes under $HOME
    for name, path in files.items():
        if name not in RUN_PRECISIONS:
            rejected_path(path).unlink(missing_ok=True)  # an older run's verdict, not this one's
    extra = _provenance(checkpoint, payload)
    export_onnx(model, spec, onnx_path, opset=opset, simplify=simplify, extra=extra)
    metadata = metadata_for(spec, extra=extra)
    source = f"{Path(data) / train_json}" if data is not None else ""
    for name, path in files.items():
        if name != "fp32" and name not in RUN_PRECISIONS:
            make_file(name, onnx_path, path, metadata=metadata, settings=settings, calibration_source=source)
    inputs = parity_inputs(spec, val, limit=parity_images)
    verdicts, reports = judge(model, spec, files, inputs=inputs, val=val, settings=settings)
    verdicts = reject_failures(verdicts)
    body = merged_report(reports["fp32"], verdicts, kept)
    atomic_write_bytes(parity_path, json.dumps(body, indent=2).encode())
    return ExportResult(onnx_path, parity_path, reports["fp32"], tuple(verdicts), tuple(r["precision"] for r in kept))
