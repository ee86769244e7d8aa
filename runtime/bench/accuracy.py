"""--coco: each row's val mIoU, scored as ``tseg-infer --coco SPLIT --eval`` scores it.

The model runs through tseg-infer's own code (:func:`~tseg.runtime.predict.infer_coco`, label
PNGs to a temporary folder, one confusion matrix over the split, model alone, no CRF), once per
(model file, device), after the timing so it does not disturb it. Every row of that file and
device gets the figure: the runtime resizes each image to the model's input size whatever
size the row was timed at.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tseg.runtime.bench.measure import Row, reason_line
from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError


def check_split(coco: Path, data: Path | None) -> None:
    """Refuses a split that cannot be scored before any timing.

    Raises:
        TsegError: the JSON is missing or malformed, or has no annotations.
    """
    dataset = CocoDataset(coco, root=data)
    if not dataset.has_annotations:
        raise TsegError(f"--coco {coco}: has no annotations to score against")


def score_rows(rows: list[Row], *, coco: Path, data: Path | None, threads: int | None,
               batch_size: int = 8) -> None:
    """Sets ``miou`` on every ran ONNX row (a note where scoring failed or does not apply)."""
    from tseg.runtime.predict import InferSettings, infer_coco

    scores: dict[tuple[str, str], float | str] = {}
    for row in rows:
        if row.engine != "onnxruntime":
            row.notes.append("mIoU: not scored for the PyTorch eager row (tseg-export's parity check compares it)")
            continue
        if row.status != "ran":
            continue
        key = (row.path, row.device)
        if key not in scores:
            scores[key] = _score(Path(row.path), row.device, coco=coco, data=data, threads=threads,
                                 batch_size=batch_size, infer=infer_coco, settings=InferSettings)
        if isinstance(scores[key], float):
            row.miou = scores[key]
        else:
            row.notes.append(scores[key])


def _score(model: Path, device: str, *, coco, data, threads, batch_size, infer, settings) -> float | str:
    with tempfile.TemporaryDirectory(prefix="tseg-bench-eval-") as out:
        try:
            result = infer(
                coco,
                data_root=data,
                settings=settings(model=model, out=Path(out), device=device, threads=threads, progress=False,
                                  batch_size=batch_size),
                evaluate=True,
            )
        except TsegError as err:
            return f"mIoU: scoring failed: {reason_line(err)}"
    if result.failures:
        return f"mIoU: {len(result.failures)} of {result.num_images} images failed: {result.failures[0].line()}"
    return float(result.scores.miou)
