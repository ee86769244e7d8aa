"""--coco: each row's val mIoU, scored as ``tseg-infer --coco SPLIT --eval`` scores it.

The model runs through tseg-infer's own code (:func:`~tseg.runtime.infer.run.infer_coco`, label
PNGs to a temporary folder, one confusion matrix over the split, model alone, no CRF), once per
(model file, device), after the timing so it does not disturb it. Every row of that file and
device gets the figure: the runtime resizes each image to the model's input size whatever
size the row was timed at.

The PyTorch eager row is scored with the same code around the model: the split's images read
by :class:`~tseg.runtime.data.coco.CocoDataset`, resized and normalised by
:func:`~tseg.runtime.images.preprocess` at the checkpoint's input size, logits upsampled by
:func:`~tseg.runtime.segment.upsample.upsample_labels` and counted in one
:class:`~tseg.runtime.data.metrics.ConfusionMatrix`; only the forward pass is PyTorch's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tseg.benchmarks.rows import Row, reason_line
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError


def check_split(coco: Path, data: Path | None) -> CocoDataset:
    """Refuses a split that cannot be scored before any timing; returns it.

    Raises:
        TsegError: the JSON is missing or malformed, or has no annotations.
    """
    dataset = CocoDataset(coco, root=data)
    if not dataset.has_annotations:
        raise TsegError(f"coco {coco}: has no annotations to score against", parameter="coco")
    return dataset


def score_rows(rows: list[Row], *, coco: Path, data: Path | None, threads: int | None,
               batch_size: int = 8) -> None:
    """Sets ``miou`` on every row that ran; a row whose split could not be scored fails (its status says why)."""
    from tseg.runtime.infer.run import InferSettings, infer_coco

    scores: dict[tuple[str, str, bool], float | str] = {}
    for row in rows:
        if row.status != "ran":
            continue
        bf16 = row.precision == "bf16"
        key = (row.path, row.device, bf16)
        if key in scores:
            pass
        elif row.engine == "pytorch":
            scores[key] = _score_eager(Path(row.path), row.device, coco=coco, data=data, threads=threads)
        else:
            scores[key] = _score(Path(row.path), row.device, coco=coco, data=data, threads=threads,
                                 batch_size=batch_size, infer=infer_coco, settings=InferSettings, bf16=bf16)
        if isinstance(scores[key], float):
            row.miou = scores[key]
        else:
            row.fail(scores[key])


def _score(model: Path, device: str, *, coco, data, threads, batch_size, infer, settings,
           bf16: bool = False) -> float | str:
    with tempfile.TemporaryDirectory(prefix="tseg-bench-eval-") as out:
        try:
            result = infer(
                coco,
                data_root=data,
                settings=settings(model=model, out=Path(out), device=device, threads=threads, progress=False,
                                  batch_size=batch_size, bf16=bf16),
                evaluate=True,
            )
        except TsegError as err:
            return f"mIoU: scoring failed: {reason_line(err)}"
    if result.failures:
        first = result.failures[0]
        return f"mIoU: {len(result.failures)} of {result.num_images} images failed, e.g. {first.source}: {first.reason}"
    return float(result.scores.miou)


def _score_eager(checkpoint: Path, device: str, *, coco: Path, data: Path | None, threads: int | None) -> float | str:
    """The eager row's mIoU: tseg.runtime's reading, preprocessing, upsampling and scoring around PyTorch."""
    from tseg.benchmarks.rows import load_eager_plugin
    from tseg.runtime.data.metrics import ConfusionMatrix
    from tseg.runtime.images import preprocess
    from tseg.runtime.segment.upsample import upsample_labels

    try:
        eager = load_eager_plugin().load_eager(checkpoint, device=device, threads=threads)
        spec = eager.spec
        dataset = CocoDataset(coco, root=data)
        dataset.check_model_classes(spec.classes, what=f"the checkpoint {checkpoint.name}")  # as tseg-infer --eval
        matrix = ConfusionMatrix(eager.num_classes)
        for index in range(len(dataset)):
            image = dataset.read_image(index)
            x = preprocess(image, size=spec.input_size, mean=spec.mean, std=spec.std)
            logits = eager.logits(x[None])[0]
            matrix.update(dataset.label_map(index), upsample_labels(logits, image.shape[:2]))
    except TsegError as err:
        return f"mIoU: scoring failed: {reason_line(err)}"
    except Exception as err:  # torch's own errors (out of memory, a kernel missing)
        return f"mIoU: scoring failed: {type(err).__name__}: {reason_line(err)}"
    return float(matrix.compute().miou)
