"""One file per precision, each judged against PyTorch: what ``tseg-export --precision`` runs.

FP32 is exported from PyTorch; FP16 and INT8 are made from the FP32 file (see
:mod:`tseg.export.fp16`, :mod:`tseg.export.int8`). Every file then meets the accuracy gate
(:mod:`tseg.export.accuracy`); a file that fails it is moved to its
``.rejected.onnx`` name, so no usable output is left behind.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from tseg.export.accuracy import (
    DEFAULT_MAX_MIOU_DROP,
    DEFAULT_MIN_AGREEMENT,
    GATED_PRECISIONS,
    RUN_PRECISIONS,
    PrecisionVerdict,
    score_split,
    session_runner,
    torch_runner,
)
from tseg.export.parity import ParityReport, compare
from tseg.export.records import file_sha256
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import ModelMetadata
from tseg.runtime.model.onnx_file import precision_path, rejected_path
from tseg.runtime.model.openvino import OpenVinoSettings
from tseg.runtime.model.session import create_session
from tseg.train.checkpoints import ModelSpec

DEFAULT_CALIB_IMAGES = 64


def parse_precisions(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"fp32,fp16,int8,bf16"`` -> ("fp32", "fp16", "int8", "bf16"): known, unique, FP32 first.

    FP32 is always part of the result: it is the file the others are made from (and the
    file bf16 runs).

    Raises:
        TsegError: an empty list or an unknown precision.
    """
    parts = [p.strip().lower() for p in (text.split(",") if isinstance(text, str) else text)]
    parts = [p for p in parts if p]
    if not parts:
        raise TsegError(
            f"precision: need one or more of {', '.join(GATED_PRECISIONS)} (comma-separated)", parameter="precision"
        )
    unknown = [p for p in parts if p not in GATED_PRECISIONS]
    if unknown:
        raise TsegError(
            f"precision: unknown precision {unknown[0]!r}; valid: {', '.join(GATED_PRECISIONS)}",
            parameter="precision",
        )
    return tuple(p for p in GATED_PRECISIONS if p in parts or p == "fp32")


def gated_file(onnx_path: Path, precision: str) -> Path:
    """The file a precision is judged on: its own (``NAME.fp16.onnx``...), or the FP32 file for bf16."""
    return onnx_path if precision in RUN_PRECISIONS else precision_path(onnx_path, precision)


def _gate_session(precision: str, path: Path):
    """The session a precision is judged through: ONNX Runtime on the CPU, or OpenVINO in bfloat16 for bf16.

    Raises:
        TsegError: bf16 without OpenVINO installed (naming the extra) or on a CPU without bfloat16.
    """
    if precision == "bf16":
        return create_session(path, device="openvino", openvino=OpenVinoSettings(bf16=True))
    return create_session(path, device="cpu")


@dataclass(frozen=True)
class PrecisionSettings:
    """What to make and how to judge it.

    Attributes:
        precisions: from :func:`parse_precisions` (FP32 first).
        calibration: the training split INT8 calibrates on (None: no INT8).
        calib_images: how many of its images.
        calib_method: minmax, entropy or percentile (None: the quantizer's default).
        int8_target: "cpu" (uint8 activations: ONNX Runtime's fast x86 kernels) or
            "tensorrt" (signed, symmetric activations: what TensorRT takes).
        keep_float: op types or node names INT8 leaves in float (None: the quantizer's default).
        min_agreement: per precision, the argmax agreement with PyTorch needed.
        max_miou_drop: the largest val mIoU drop against PyTorch allowed.
        progress: progress bars on stderr.
    """

    precisions: tuple[str, ...] = ("fp32",)
    calibration: CocoDataset | None = None
    calib_images: int = DEFAULT_CALIB_IMAGES
    calib_method: str | None = None
    int8_target: str = "cpu"
    keep_float: tuple[str, ...] | None = None
    min_agreement: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(DEFAULT_MIN_AGREEMENT))
    max_miou_drop: float = DEFAULT_MAX_MIOU_DROP
    progress: bool = False


def make_file(precision: str, fp32_path: Path, dst: Path, *, metadata: ModelMetadata,
              settings: PrecisionSettings, calibration_source: str) -> None:
    """Writes ``dst`` in ``precision`` from the FP32 file, with metadata saying what it is."""
    from tseg.export import fp16, int8

    if precision == "fp16":
        props = dataclasses.replace(metadata, precision="fp16").to_props()
        fp16.convert_fp16(fp32_path, dst, props=props)
        return
    coco = settings.calibration
    if coco is None or settings.calib_images < 1:
        raise TsegError(
            "settings: int8 needs calibration images: a calibration split and calib_images >= 1", parameter="settings"
        )
    method = settings.calib_method or int8.DEFAULT_CALIB_METHOD
    keep_float = int8.DEFAULT_KEEP_FLOAT if settings.keep_float is None else settings.keep_float
    count = min(settings.calib_images, len(coco))
    calibration = {
        "images": count,
        "method": method,
        "split": calibration_source,
        "keep_float": list(keep_float),
        "target": settings.int8_target,
    }
    target = int8.TENSORRT_INT8 if settings.int8_target == "tensorrt" else int8.CPU_INT8
    props = dataclasses.replace(metadata, precision="int8", calibration=calibration).to_props()
    images = _calibration_images(coco, metadata, count=count, progress=settings.progress)
    int8.quantize_int8(
        fp32_path, dst, calibration=images, method=method, keep_float=keep_float, props=props, settings=target
    )


def _calibration_images(coco: CocoDataset, metadata: ModelMetadata, *, count: int, progress: bool):
    from tqdm import tqdm

    from tseg.export.calibration import calibration_images

    images = calibration_images(
        coco, count=count, size=metadata.input_size, mean=metadata.mean, std=metadata.std
    )
    return tqdm(images, total=count, desc="int8 calibration", unit="img", disable=not progress, leave=False)


def judge(
    model: nn.Module,
    spec: ModelSpec,
    files: Mapping[str, Path],
    *,
    inputs: list,
    val: CocoDataset | None,
    settings: PrecisionSettings,
) -> tuple[list[PrecisionVerdict], dict[str, ParityReport]]:
    """Compares every file with PyTorch (parity inputs, and the val split when given).

    Returns:
        One verdict per file, in the order of ``files`` (nothing is moved here), and
        each file's parity report.
    """
    sessions = {precision: _gate_session(precision, path) for precision, path in files.items()}
    torch_miou, split = None, {}
    if val is not None:
        runners = {precision: session_runner(session) for precision, session in sessions.items()}
        torch_miou, split = score_split(torch_runner(model), runners, val, spec, progress=settings.progress)
    verdicts, reports = [], {}
    for precision, path in files.items():
        report = reports[precision] = compare(
            model, path, inputs, min_agreement=settings.min_agreement[precision], session=sessions[precision]
        )
        verdicts.append(
            PrecisionVerdict(
                precision=precision,
                path=str(path),
                cases=report.cases,
                min_agreement=settings.min_agreement[precision],
                split=split.get(precision),
                torch_miou=torch_miou,
                max_miou_drop=settings.max_miou_drop,
                details={"providers": list(report.providers), "bytes": path.stat().st_size},
                sha256=file_sha256(path),
            )
        )
    return verdicts, reports


def reject_failures(verdicts: list[PrecisionVerdict]) -> list[PrecisionVerdict]:
    """Moves each failed file to its ``.rejected.onnx`` name (replacing an older one); a failed
    bf16 run leaves the FP32 file it ran where it is (its verdict says not to run it in bf16)."""
    kept = []
    for verdict in verdicts:
        if not verdict.passed and verdict.precision not in RUN_PRECISIONS:
            target = rejected_path(Path(verdict.path))
            os.replace(verdict.path, target)
            verdict = dataclasses.replace(verdict, rejected_as=str(target))
        kept.append(verdict)
    return kept


def failure_line(verdicts: Sequence[PrecisionVerdict]) -> str:
    """One line naming each failed precision and its figures ('' when all passed)."""
    failed = [v for v in verdicts if not v.passed]
    return "; ".join(
        f"{v.precision} rejected ({', '.join(v.failures())})" + (f", moved to {v.rejected_as}" if v.rejected_as else "")
        for v in failed
    )
