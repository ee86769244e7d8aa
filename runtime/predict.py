"""Batch inference over files, folders or a COCO split, writing label PNGs."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tseg.runtime.coco import CocoDataset
from tseg.runtime.refine import CrfParams
from tseg.runtime.errors import TsegError
from tseg.runtime.files import check_outputs_apart, is_within, remove_stale_temp_files
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


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EVAL_FILE = "eval.json"  # the scores of --eval, in --out


def _is_label_png(path: Path) -> bool:
    """True for a palette PNG (what :func:`save_label_png` writes), from its first 26 bytes."""
    with open(path, "rb") as handle:
        head = handle.read(26)
    return len(head) == 26 and head.startswith(PNG_SIGNATURE) and head[12:16] == b"IHDR" and head[25] == 3


def check_out_folder(out: Path, inputs: list[Path]) -> None:
    """Refuses an --out that is a file, or that is or lies inside an input folder.

    Args:
        out: the output folder (created later if missing).
        inputs: input folders, or files (whose folder counts).

    Raises:
        TsegError: naming the clash.
    """
    if out.exists() and not out.is_dir():
        raise TsegError(f"--out {out} is an existing file: need a folder for the label PNGs")
    check_outputs_apart(out, inputs)


def plan_targets(out: Path, sources: list[tuple[str, Path]]) -> list[Path]:
    """The label PNG of each input, checked before anything is written.

    Args:
        out: the output folder.
        sources: (input as the user knows it, path relative to ``out``) pairs.

    Returns:
        ``out / relative`` with the suffix .png, in input order.

    Raises:
        TsegError: a target would lie outside ``out`` (``..``, absolute, a symlink
            leading out), two inputs would share a target, or a target exists and
            is not a label PNG (a folder, a photo: tseg replaces only its own results).
    """
    targets: dict[Path, tuple[str, Path]] = {}
    for source, relative in sources:
        try:
            target = out / Path(relative).with_suffix(".png")
        except ValueError:
            raise TsegError(f"{source}: cannot name a label PNG after {str(relative)!r}") from None
        if Path(relative).is_absolute() or not is_within(target, out):
            raise TsegError(f"{source}: its label PNG {target} would lie outside --out {out}")
        key = target.resolve()
        if key in targets:
            raise TsegError(
                f"{targets[key][0]} and {source} would both be written to {target}:"
                " rename one, or segment them into separate --out folders"
            )
        if target.exists() and (not target.is_file() or not _is_label_png(target)):
            raise TsegError(
                f"{target} exists and is not a label PNG (tseg replaces only its own results):"
                " choose another --out or move it away"
            )
        targets[key] = (source, target)
    folders = {target.parent for _, target in targets.values()}
    for folder in folders:
        _check_folder_path(folder)
    for folder in folders:
        remove_stale_temp_files(folder)  # left by a run that was killed mid-write
    return [target for _, target in targets.values()]


def _check_folder_path(folder: Path) -> None:
    """Refuses a target folder that cannot be made because a file stands in its path."""
    for part in [folder, *folder.parents]:
        if part.exists():
            if not part.is_dir():
                raise TsegError(f"cannot write label PNGs into {folder}: {part} is a file, not a folder")
            return


def infer_paths(paths: list[str | Path], *, settings: InferSettings) -> list[Path]:
    """Segments image files and folders; one palette PNG per image.

    Images found in a folder keep their path relative to that folder under
    ``settings.out``. EXIF orientation is applied (photos from phones). Before
    any work, ``settings.out`` is checked to lie outside the inputs' folders and
    every target to be distinct, inside it, and not an existing non-label file.

    Returns:
        The PNG files written, in input order.

    Raises:
        TsegError: bad paths or output folder, a bad model or an unreadable image.
    """
    out = Path(settings.out)
    images = find_images(paths)
    check_out_folder(out, [Path(p) for p in paths])
    unique: dict[Path, tuple[Path, Path]] = {}
    for path, relative in images:
        unique.setdefault(path.resolve(), (path, relative))  # the same file given twice is segmented once
    images = list(unique.values())
    targets = plan_targets(out, [(str(path), relative) for path, relative in images])
    segmenter = Segmenter(settings.model, device=settings.device, threads=settings.threads)
    progress = tqdm(list(zip(images, targets, strict=True)), desc="infer", unit="img", disable=not settings.progress)
    for (path, _), target in progress:
        plain, refined = _segment(segmenter, read_image(path, exif_transpose=True), settings.crf)
        labels = refined if refined is not None else plain
        save_label_png(target, labels, palette=segmenter.metadata.palette)
    return targets


def check_classes(dataset: CocoDataset, segmenter: Segmenter) -> None:
    """Refuses scoring a model against a split with another number of classes (names may differ: warned)."""
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

    Raises:
        TsegError: ``settings.out`` is or lies inside the data root, two images
            share a label PNG, or the data, the model or an image is bad.
    """
    out = Path(settings.out)
    dataset = CocoDataset(json_path, root=data_root)
    check_out_folder(out, [dataset.root])
    if evaluate and not dataset.has_annotations:
        raise TsegError(f"cannot evaluate: {dataset.json_path} has no annotations")
    where = dataset.json_path.name
    sources = [(f"{where} image {im.id} ({im.file_name})", Path(im.file_name)) for im in dataset.images]
    targets = plan_targets(out, sources)
    report = out / EVAL_FILE
    if evaluate and (report.is_symlink() or (report.exists() and not report.is_file())):
        raise TsegError(f"{report} exists and is not a file tseg wrote: choose another --out or move it away")
    segmenter = Segmenter(settings.model, device=settings.device, threads=settings.threads)
    if evaluate:
        check_classes(dataset, segmenter)
    plain_cm = ConfusionMatrix(segmenter.metadata.num_classes)
    crf_cm = ConfusionMatrix(segmenter.metadata.num_classes)
    for index in tqdm(range(len(dataset)), desc="infer", unit="img", disable=not settings.progress):
        image = dataset.read_image(index)
        plain, refined = _segment(segmenter, image, settings.crf)
        save_label_png(targets[index], refined if refined is not None else plain, palette=segmenter.metadata.palette)
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
