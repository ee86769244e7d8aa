"""What tseg-infer uses when --model or --out is not given: the newest model, a new run folder."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import create_run_dir
from tseg.runtime.inputs import check_model_file, open_input
from tseg.runtime.metadata import PREFIX

RUNS_DIR = Path("runs")
MAX_BATCH_SIZE = 1024  # images per model run: tseg-infer --batch-size, TensorRT's largest profile
# Intra-op threads (ONNX Runtime, torch): more than the CPUs only adds spinning and contention, and
# thousands of them exhaust a limited address space (ONNX Runtime then deadlocks in its pool's start).
MAX_THREADS = os.cpu_count() or 1
INFER_DIR = "infer"  # runs/infer/NAME holds tseg-infer's outputs
REJECTED_SUFFIX = ".rejected.onnx"  # what tseg-export leaves when a model fails its parity check
_MARKER = (PREFIX + "schema").encode()  # a metadata key every tseg export carries


def has_tseg_metadata(path: Path) -> bool:
    """True when the file holds tseg's metadata keys (a byte search: no model is loaded).

    The full check happens when the model is opened; this only skips ONNX files that
    other tools left under runs/.
    """
    try:
        check_model_file(path)  # a regular file of a model's size and first bytes: never a FIFO or 4 GB of zeros
        with open_input(path, what="model") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return data.rfind(_MARKER) >= 0
    except (TsegError, OSError, ValueError):  # unreadable, or not a model
        return False


_LOWER_PRECISIONS = (".fp16.onnx", ".int8.onnx")


def _fp32_sibling(path: Path) -> Path:
    """runs/RUN/best.int8.onnx -> runs/RUN/best.onnx when that is a tseg model too."""
    for suffix in _LOWER_PRECISIONS:
        if path.name.endswith(suffix):
            fp32 = path.with_name(path.name[: -len(suffix)] + ".onnx")
            if fp32.is_file() and has_tseg_metadata(fp32):
                return fp32
    return path


def newest_model(runs_dir: Path = RUNS_DIR) -> Path:
    """The most recently written model that tseg-export made under ``runs_dir``.

    Candidates are ``*.onnx`` files anywhere under ``runs_dir`` (not ``*.rejected.onnx``)
    that carry tseg metadata; the newest by modification time wins, except that an export's
    FP16/INT8 siblings (``best.fp16.onnx``, written after ``best.onnx``) lead to its FP32
    file: a lower precision is chosen with --model, never by default.

    Raises:
        TsegError: there is none, saying to pass --model or run tseg-export.
    """
    candidates = []
    if runs_dir.is_dir():
        for path in runs_dir.rglob("*.onnx"):
            if path.name.endswith(REJECTED_SUFFIX) or not path.is_file():
                continue
            candidates.append((path.stat().st_mtime, str(path), path))
    for _, _, path in sorted(candidates, reverse=True):
        if has_tseg_metadata(path):
            return _fp32_sibling(path)
    raise TsegError(
        f"no --model given and no exported model under {runs_dir}/ (looked for *.onnx with tseg metadata):"
        " pass --model FILE.onnx, or run tseg-export on a checkpoint first"
    )


def infer_run_name(paths: list[Path], coco: Path | None) -> str:
    """The NAME of runs/infer/NAME: ``coco-SPLIT`` for a COCO split, else the (first) input folder's name."""
    if coco is not None:
        return f"coco-{coco.stem}" if coco.stem else "coco"
    first = Path(paths[0]) if paths else Path(".")
    folder = first if first.is_dir() else first.parent
    name = folder.resolve().name
    return name if name not in ("", ".", "..") else "images"


def new_infer_dir(paths: list[Path], coco: Path | None, *, runs_dir: Path = RUNS_DIR) -> Path:
    """Makes a new folder runs/infer/NAME (NAME-2, NAME-3 ... if taken: never an earlier run's)."""
    return create_run_dir(runs_dir / INFER_DIR, infer_run_name(paths, coco))
