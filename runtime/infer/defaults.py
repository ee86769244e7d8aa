"""What tseg-infer uses when --model or --out is not given: the newest model, a new run folder."""

from __future__ import annotations

from pathlib import Path

from tseg.runtime.errors import TsegError
from tseg.runtime.files import RUNS_DIR, create_run_dir
from tseg.runtime.model.onnx_file import REJECTED_SUFFIX, fp32_path, has_tseg_marker

INFER_DIR = "infer"  # runs/infer/NAME holds tseg-infer's outputs


def _fp32_sibling(path: Path) -> Path:
    """runs/RUN/best.int8.onnx -> runs/RUN/best.onnx when that is a tseg model too."""
    fp32 = fp32_path(path)
    return fp32 if fp32 is not None and fp32.is_file() and has_tseg_marker(fp32) else path


def newest_model(runs_dir: Path = RUNS_DIR) -> Path:
    """The most recently written model that tseg-export made under ``runs_dir``.

    Candidates are ``*.onnx`` files anywhere under ``runs_dir`` (not ``*.rejected.onnx``)
    that carry tseg metadata; the newest by modification time wins, except that an export's
    FP16/INT8 siblings (``best.fp16.onnx``, written after ``best.onnx``) lead to its FP32
    file: a lower precision is chosen by naming its file, never by default.

    Raises:
        TsegError: there is none, saying to name a model or run tseg-export.
    """
    candidates = []
    if runs_dir.is_dir():
        for path in runs_dir.rglob("*.onnx"):
            if path.name.endswith(REJECTED_SUFFIX) or not path.is_file():
                continue
            candidates.append((path.stat().st_mtime, str(path), path))
    for _, _, path in sorted(candidates, reverse=True):
        if has_tseg_marker(path):
            return _fp32_sibling(path)
    raise TsegError(
        f"no model given and no exported model under {runs_dir}/ (looked for *.onnx with tseg metadata):"
        " pass model='FILE.onnx', or run tseg-export on a checkpoint first"
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
