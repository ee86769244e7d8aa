"""Batch inference over files, folders or a COCO split, writing label PNGs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tseg.runtime.coco import CocoDataset
from tseg.runtime.crf.params import CrfParams
from tseg.runtime.errors import TsegError
from tseg.runtime.images import find_images, read_image
from tseg.runtime.labels import labels_from_scores, save_label_png
from tseg.runtime.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.segmenter import Segmenter


@dataclass(frozen=True)
class InferSettings:
    """How to run a model over images.

    Attributes:
        model: the exported .onnx file.
        out: folder for the label PNGs (created if missing).
        device: "auto", "cpu", "cuda" or "tensorrt".
        threads: ONNX Runtime intra-op threads; None lets it choose.
        progress: show a progress bar.
        crf: dense-CRF post-processing parameters, or None for none.
    """

    model: Path
    out: Path
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    crf: CrfParams | None = None


def _segment(segmenter: Segmenter, image, crf: CrfParams | None):
    """(labels without CRF, labels with CRF or None), both at the image's size."""
    scores = segmenter.scores(image)
    plain = labels_from_scores(scores)
    return plain, (crf.refine(scores, image) if crf is not None else None)


def _label_png_path(out: Path, relative: Path) -> Path:
    return out / relative.with_suffix(".png")


def infer_paths(paths: list[str | Path], *, settings: InferSettings) -> list[Path]:
    """Segments image files and folders; one palette PNG per image.

    Images found in a folder keep their path relative to that folder under
    ``settings.out``. EXIF orientation is applied (photos from phones).

    Returns:
        The PNG files written, in input order.
    """
    images = find_images(paths)
    segmenter = Segmenter(settings.model, device=settings.device, threads=settings.threads)
    written = []
    for path, relative in tqdm(images, desc="infer", unit="img", disable=not settings.progress):
        plain, refined = _segment(segmenter, read_image(path, exif_transpose=True), settings.crf)
        labels = refined if refined is not None else plain
        target = _label_png_path(settings.out, relative)
        save_label_png(target, labels, palette=segmenter.metadata.palette)
        written.append(target)
    return written


def _check_classes(dataset: CocoDataset, segmenter: Segmenter) -> None:
    model_classes = segmenter.metadata.classes
    if len(model_classes) != dataset.num_classes:
        raise TsegError(
            f"the model has {len(model_classes)} classes but {dataset.json_path.name} has"
            f" {dataset.num_classes} (with background): {', '.join(dataset.classes)}"
        )
    if tuple(model_classes) != tuple(dataset.classes):
        print(
            f"WARNING: class names differ between the model ({', '.join(model_classes)}) and"
            f" {dataset.json_path.name} ({', '.join(dataset.classes)}); comparing by label index",
            file=sys.stderr,
        )


@dataclass(frozen=True)
class CocoInferResult:
    """What :func:`infer_coco` did: images written and, when evaluating, the scores.

    ``scores`` are of the model alone; ``crf_scores`` after the CRF (when one ran).
    """

    num_images: int
    classes: tuple[str, ...]
    scores: SegmentationScores | None
    crf_scores: SegmentationScores | None = None


def infer_coco(
    json_path: str | Path,
    *,
    data_root: str | Path | None,
    settings: InferSettings,
    evaluate: bool,
) -> CocoInferResult:
    """Segments the images of a COCO split, keeping their relative paths.

    Args:
        json_path: the split (e.g. val.json).
        data_root: folder the file names are relative to (default: the JSON's folder).
        settings: model, output folder, device.
        evaluate: compare with the split's annotations and return the scores.

    Returns:
        The number of images, the model's classes and, when ``evaluate``,
        dataset-level scores from one confusion matrix.
    """
    dataset = CocoDataset(json_path, root=data_root)
    if evaluate and not dataset.has_annotations:
        raise TsegError(f"cannot evaluate: {dataset.json_path} has no annotations")
    segmenter = Segmenter(settings.model, device=settings.device, threads=settings.threads)
    if evaluate:
        _check_classes(dataset, segmenter)
    plain_cm = ConfusionMatrix(segmenter.metadata.num_classes)
    crf_cm = ConfusionMatrix(segmenter.metadata.num_classes)
    for index in tqdm(range(len(dataset)), desc="infer", unit="img", disable=not settings.progress):
        image = dataset.read_image(index)
        plain, refined = _segment(segmenter, image, settings.crf)
        target = _label_png_path(settings.out, Path(dataset.images[index].file_name))
        save_label_png(target, refined if refined is not None else plain, palette=segmenter.metadata.palette)
        if evaluate:
            truth = dataset.label_map(index)
            plain_cm.update(truth, plain)
            if refined is not None:
                crf_cm.update(truth, refined)
    return CocoInferResult(
        num_images=len(dataset),
        classes=segmenter.metadata.classes,
        scores=plain_cm.compute() if evaluate else None,
        crf_scores=crf_cm.compute() if evaluate and settings.crf is not None else None,
    )
