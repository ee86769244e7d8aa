"""Checkpoint in, checked ONNX file and parity report out: what tseg-export runs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tseg.export.onnx import DEFAULT_OPSET, export_onnx
from tseg.export.parity import MIN_AGREEMENT, ParityReport, compare, parity_inputs
from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes
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
    payload = load_checkpoint(checkpoint)
    model, spec = model_from_checkpoint(payload)
    coco = None
    if data is not None:
        if not Path(data).is_dir():
            raise TsegError(f"data folder not found: {data}")
        coco = CocoDataset(Path(data) / val_json, root=data)
    onnx_path = Path(out) if out is not None else default_onnx_path(checkpoint)
    extra = {
        "checkpoint": str(checkpoint),
        "epoch": payload.get("epoch"),
        "metrics": payload.get("metrics", {}),
    }
    export_onnx(model, spec, onnx_path, opset=opset, simplify=simplify, extra=extra)
    report = compare(
        model,
        onnx_path,
        parity_inputs(spec, coco, limit=parity_images),
        device="cpu",
        min_agreement=min_agreement,
    )
    parity_path = onnx_path.with_suffix(".parity.json")
    atomic_write_bytes(parity_path, json.dumps(report.to_dict(), indent=2).encode())
    return ExportResult(onnx_path, parity_path, report)
