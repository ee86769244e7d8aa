"""Checkpoint in, checked ONNX file and parity report out: what tseg-export runs."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from tseg.export.onnx import DEFAULT_OPSET, check_opset, export_onnx
from tseg.export.parity import MIN_AGREEMENT, ParityReport, compare, parity_inputs
from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.files import TEMP_SUFFIX, atomic_write_bytes, temp_name_prefix
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint


@dataclass(frozen=True)
class ExportResult:
    """The files written and the parity verdict."""

    onnx_path: Path
    parity_path: Path
    report: ParityReport


def default_onnx_path(checkpoint: Path) -> Path:
    """runs/RUN/best.pt -> runs/RUN/best.onnx."""
    return checkpoint.with_suffix(".onnx")


def parity_report_path(onnx_path: Path) -> Path:
    """runs/RUN/best.onnx -> runs/RUN/best.parity.json."""
    return onnx_path.with_suffix(".parity.json")


def _same_file(a: Path, b: Path) -> bool:
    """Same file, whatever the spelling (relative, ``..``, symlinks, hard links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


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


def _remove_stale_outputs(*outputs: Path) -> None:
    """Deletes temp files that a killed export left for these outputs (and only those)."""
    for path in outputs:
        if path.parent.is_dir():
            for stale in path.parent.glob(f"{glob.escape(temp_name_prefix(path))}*{TEMP_SUFFIX}"):
                stale.unlink(missing_ok=True)


def check_export_paths(checkpoint: Path, out: Path | None) -> tuple[Path, Path]:
    """(ONNX path, parity report path), refused before any work if they would replace the input.

    Raises:
        TsegError: the checkpoint is missing; ``out`` does not end in .onnx, is an existing folder, or either output
            is the checkpoint itself (also under another spelling, via a symlink, or the
            default output of a checkpoint named ``*.onnx``).
    """
    if not checkpoint.is_file():
        raise TsegError(f"checkpoint not found: {checkpoint}")
    if out is None:
        if checkpoint.suffix.lower() == ".onnx":
            raise TsegError(
                f"the checkpoint {checkpoint} ends in .onnx, so the default output would replace it;"
                " give -o/--out with another .onnx path"
            )
        onnx_path = default_onnx_path(checkpoint)
    else:
        onnx_path = out
        if onnx_path.is_dir():
            raise TsegError(f"-o/--out {onnx_path} is a folder; give the path of the .onnx file to write")
        if onnx_path.suffix.lower() != ".onnx":
            raise TsegError(f"-o/--out must be a path ending in .onnx, got {str(onnx_path)!r}")
    parity_path = parity_report_path(onnx_path)
    for written, what in ((onnx_path, "the ONNX output"), (parity_path, "the parity report")):
        if _same_file(written, checkpoint):
            raise TsegError(
                f"{what} {written} is the checkpoint {checkpoint}: it would replace its own input;"
                " choose another -o/--out"
            )
        if written.is_dir():
            raise TsegError(f"{what} {written} is an existing folder; choose another -o/--out")
    return onnx_path, parity_path


def export_checkpoint(
    checkpoint: str | Path,
    *,
    out: str | Path | None = None,
    data: str | Path | None = None,
    val_json: str = "val.json",
    parity_images: int = 8,
    opset: int = DEFAULT_OPSET,
    simplify: bool = True,
    min_agreement: float = MIN_AGREEMENT,
) -> ExportResult:
    """Exports a tseg checkpoint to ONNX and checks it against PyTorch.

    Args:
        checkpoint: a .pt written by tseg-train.
        out: the .onnx path (default: beside the checkpoint).
        data: dataset root; its ``val_json`` images join the parity check.
        val_json: the split to take parity images from.
        parity_images: how many dataset images to compare.
        opset: ONNX opset.
        simplify: run onnxslim on the graph.
        min_agreement: argmax agreement each parity case needs.

    Returns:
        Paths and the report; the report is also saved as ``<out>.parity.json``.
        Check ``result.report.passed``.
    """
    checkpoint = Path(checkpoint)
    onnx_path, parity_path = check_export_paths(checkpoint, Path(out) if out is not None else None)
    coco = None
    if data is not None:
        if not Path(data).is_dir():
            raise TsegError(f"data folder not found: {data}")
        split = Path(data) / val_json
        if not split.is_file():
            raise TsegError(f"--data {data} has no validation split {val_json} (set --val-json)")
        coco = CocoDataset(split, root=data)
    payload = load_checkpoint(checkpoint)
    model, spec = model_from_checkpoint(payload, source=str(checkpoint))
    check_opset(opset)  # after the checkpoint: its probe imports ONNX Runtime, which writes under $HOME
    _remove_stale_outputs(onnx_path, parity_path)
    extra = _provenance(checkpoint, payload)
    export_onnx(model, spec, onnx_path, opset=opset, simplify=simplify, extra=extra)
    report = compare(
        model,
        onnx_path,
        parity_inputs(spec, coco, limit=parity_images),
        device="cpu",
        min_agreement=min_agreement,
    )
    atomic_write_bytes(parity_path, json.dumps(report.to_dict(), indent=2).encode())
    return ExportResult(onnx_path, parity_path, report)
