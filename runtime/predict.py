"""Batch inference over files, folders or a COCO split, writing label PNGs (and overlays, a CSV).

The images go through :mod:`tseg.runtime.pipeline` (decoding, the model, post-processing and
writing overlap); an image that cannot be read or segmented is reported and the others are
still written (see :class:`InferResult`).
"""

from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write_bytes, check_outputs_apart, is_within, remove_stale_temp_files
from tseg.runtime.images import find_images, read_image
from tseg.runtime.labels import save_label_png
from tseg.runtime.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.pipeline import Failure, Job, PipelineReport, PipelineSettings, Result, Stages, run_pipeline
from tseg.runtime.refine import CrfParams
from tseg.runtime.segmenter import Segmenter

ERRORS_FILE = "errors.txt"  # the failures of a run, in --out
ERRORS_HEADER = "# tseg-infer: images that could not be segmented (failed: SOURCE: reason)\n"
OVERLAY_SUFFIX = ".jpg"


@dataclass(frozen=True)
class InferSettings:
    """How to run a model over images.

    Attributes:
        model: the exported .onnx file.
        out: folder for the label PNGs (created if missing).
        device: "auto", "cpu", "cuda" or "tensorrt".
        threads: ONNX Runtime intra-op threads; None lets it choose.
        progress: show a progress bar (images/s) on stderr.
        crf: dense-CRF post-processing parameters, or None for none.
        batch_size: images per model run.
        workers: decoding threads (0: every stage in turn on one thread, the sequential path).
        post_workers: post-processing (upsampling, CRF) threads; None: as many as ``workers``.
        fail_fast: stop at the first image that fails instead of carrying on.
        tta: test-time augmentation views (a :class:`~tseg.runtime.tta.TtaSettings`), or None.
        overlay: folder for pictures of each image with its labels blended in, or None.
        submission: the competition's CSV to write (COCO splits only), or None.
    """

    model: Path
    out: Path
    device: str = "auto"
    threads: int | None = None
    progress: bool = True
    crf: CrfParams | None = None
    batch_size: int = 8
    workers: int = 2
    post_workers: int | None = None
    fail_fast: bool = False
    tta: object | None = None
    overlay: Path | None = None
    submission: Path | None = None

    def pipeline(self) -> PipelineSettings:
        post = self.post_workers if self.post_workers is not None else max(1, self.workers)
        return PipelineSettings(
            batch_size=self.batch_size,
            workers=self.workers,
            post_workers=post,
            fail_fast=self.fail_fast,
            progress=self.progress,
        )


@dataclass(frozen=True)
class InferResult:
    """What :func:`infer_paths` did.

    Attributes:
        written: the label PNGs written, in input order.
        failures: the images that failed, in input order (also in ``errors_file``).
        stopped: --fail-fast stopped the run at the first failure.
        errors_file: --out/errors.txt when anything failed, else None.
    """

    written: list[Path]
    failures: tuple[Failure, ...] = ()
    stopped: bool = False
    errors_file: Path | None = None


def open_segmenter(settings: InferSettings) -> Segmenter:
    """The Segmenter the settings describe (CRF, TTA and batch size included)."""
    return Segmenter(
        settings.model,
        device=settings.device,
        threads=settings.threads,
        crf=settings.crf,
        tta=settings.tta,
        batch_size=settings.batch_size,
    )


def report_failure(failure: Failure) -> None:
    """Prints ``failed: SOURCE: reason`` on stderr (above the progress bar)."""
    tqdm.write(failure.line(), file=sys.stderr)


def check_report_file(path: Path) -> None:
    """Refuses, before any work, a report path (eval.json, errors.txt) that tseg must not replace."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TsegError(f"{path} exists and is not a file tseg wrote: choose another --out or move it away")


def write_errors_file(out: Path, report: PipelineReport) -> Path | None:
    """Writes --out/errors.txt (atomically) when anything failed; removes tseg's stale one otherwise."""
    path = out / ERRORS_FILE
    if report.failures:
        lines = [ERRORS_HEADER] + [failure.line() + "\n" for failure in report.failures]
        atomic_write_bytes(path, "".join(lines).encode())
        return path
    if path.is_file() and not path.is_symlink():
        with open(path, "rb") as handle:
            stale = handle.read(len(ERRORS_HEADER.encode())) == ERRORS_HEADER.encode()
        if stale:  # an earlier run's list, which no longer applies
            path.unlink()
    return None


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


def plan_overlays(folder: Path, relatives: list[Path], inputs: list[Path]) -> list[Path]:
    """The --overlay picture of each input (``folder/relative`` as .jpg), checked before any work.

    Raises:
        TsegError: the folder overlaps an input folder or is a file, or a picture's place
            is taken by something that is not a file.
    """
    if folder.exists() and not folder.is_dir():
        raise TsegError(f"--overlay {folder} is an existing file: need a folder for the pictures")
    check_outputs_apart(folder, inputs, what="--overlay")
    targets = [folder / Path(relative).with_suffix(OVERLAY_SUFFIX) for relative in relatives]
    for target in targets:
        if not is_within(target, folder):
            raise TsegError(f"the overlay {target} would lie outside --overlay {folder}")
        if target.is_symlink() or (target.exists() and not target.is_file()):
            raise TsegError(f"{target} exists and is not a picture tseg wrote: choose another --overlay")
    return targets


class _Writer:
    """The pipeline's sink: the label PNG, the overlay, the CSV row, the scores of each image."""

    def __init__(self, segmenter: Segmenter, targets: list[Path], *, overlays: list[Path] | None = None) -> None:
        self.palette, self.classes = segmenter.metadata.palette, segmenter.metadata.classes
        self.targets, self.overlays = targets, overlays
        self.written: list[Path] = []
        self.extra: list[Callable[[Result], None]] = []

    def __call__(self, result: Result) -> None:
        save_label_png(self.targets[result.index], result.labels, palette=self.palette)
        if self.overlays is not None:
            from tseg.runtime.overlay import save_overlay

            save_overlay(self.overlays[result.index], result.image, result.labels, self.classes, self.palette)
        for extra in self.extra:
            extra(result)
        self.written.append(self.targets[result.index])


def _run(jobs: list[Job], segmenter: Segmenter, writer: _Writer, settings: InferSettings, *, scores: bool = False):
    stages = Stages(segmenter, keep_image=settings.overlay is not None, plain_labels=scores)
    pipeline = settings.pipeline()
    if segmenter.batch_size < pipeline.batch_size:  # a graph whose batch axis is fixed at 1
        pipeline = dataclasses.replace(pipeline, batch_size=segmenter.batch_size)
    return run_pipeline(jobs, stages=stages, settings=pipeline, sink=writer, report=report_failure)


def infer_paths(paths: list[str | Path], *, settings: InferSettings) -> InferResult:
    """Segments image files and folders; one palette PNG per image.

    Images found in a folder keep their path relative to that folder under
    ``settings.out``. EXIF orientation is applied (photos from phones). Before
    any work, ``settings.out`` is checked to lie outside the inputs' folders and
    every target to be distinct, inside it, and not an existing non-label file.
    An image that cannot be read or segmented is reported (stderr, errors.txt) and
    the others are still written.

    Returns:
        The PNG files written and the failures, in input order.

    Raises:
        TsegError: bad paths or output folder, or a bad model (before any work), or
            what stops a run (the model failing on every image, a full disk).
    """
    out = Path(settings.out)
    images = find_images(paths)
    inputs = [Path(p) for p in paths]
    check_out_folder(out, inputs)
    unique: dict[Path, tuple[Path, Path]] = {}
    for path, relative in images:
        unique.setdefault(path.resolve(), (path, relative))  # the same file given twice is segmented once
    images = list(unique.values())
    targets = plan_targets(out, [(str(path), relative) for path, relative in images])
    overlays = plan_overlays(settings.overlay, [r for _, r in images], inputs) if settings.overlay else None
    check_report_file(out / ERRORS_FILE)
    segmenter = open_segmenter(settings)
    jobs = [Job(str(path), functools.partial(read_image, path, exif_transpose=True)) for path, _ in images]
    writer = _Writer(segmenter, targets, overlays=overlays)
    report = _run(jobs, segmenter, writer, settings)
    errors = write_errors_file(out, report)
    return InferResult(written=writer.written, failures=report.failures, stopped=report.stopped, errors_file=errors)


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

    ``scores`` are of the model alone; ``crf_scores`` after the CRF (when one ran); both
    over the images written (when some failed, they are not the split's scores).
    """

    num_images: int
    classes: tuple[str, ...]
    scores: SegmentationScores | None
    crf_scores: SegmentationScores | None = None
    written: int = 0
    failures: tuple[Failure, ...] = ()
    stopped: bool = False
    errors_file: Path | None = None
    submission: Path | None = None


class _Scores:
    """Confusion matrices of the labels without and with the CRF, updated by the writer."""

    def __init__(self, num_classes: int, *, crf: bool) -> None:
        self.plain = ConfusionMatrix(num_classes)
        self.crf = ConfusionMatrix(num_classes) if crf else None

    def __call__(self, result: Result) -> None:
        self.plain.update(result.truth, result.plain if result.plain is not None else result.labels)
        if self.crf is not None:
            self.crf.update(result.truth, result.labels)


class _Incomplete(Exception):
    """Raised inside the submission writer so that an incomplete CSV is not kept."""


def check_submission_path(path: Path, inputs: list[Path]) -> None:
    """Refuses a --submission that is a folder or a link, or lies in the data folder, before any work."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise TsegError(f"--submission {path} exists and is not a file: need a .csv file name")
    for source in inputs:
        if is_within(path, source):
            raise TsegError(f"--submission {path} lies in the input folder {source}: write it outside the data")


def _open_submission(path: Path | None):
    if path is None:
        return nullcontext(None)
    from tseg.runtime.submission import SubmissionWriter

    return SubmissionWriter(path)


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
        settings: model, output folder, device, pipeline, --submission.
        evaluate: compare with the split's annotations and return the scores.

    Returns:
        The number of images, the model's classes, the failures and, when ``evaluate``,
        scores from one confusion matrix. The submission CSV is kept only when every
        image was segmented.

    Raises:
        TsegError: ``settings.out`` is or lies inside the data root, two images
            share a label PNG, or the data or the model is bad (all before any work),
            or what stops a run (the model failing on every image, a full disk).
    """
    out = Path(settings.out)
    dataset = CocoDataset(json_path, root=data_root)
    check_out_folder(out, [dataset.root])
    if evaluate and not dataset.has_annotations:
        raise TsegError(f"cannot evaluate: {dataset.json_path} has no annotations")
    where = dataset.json_path.name
    relatives = [Path(im.file_name) for im in dataset.images]
    sources = [(f"{where} image {im.id} ({im.file_name})", Path(im.file_name)) for im in dataset.images]
    targets = plan_targets(out, sources)
    overlays = plan_overlays(settings.overlay, relatives, [dataset.root]) if settings.overlay else None
    if evaluate:
        check_report_file(out / EVAL_FILE)
    check_report_file(out / ERRORS_FILE)
    if settings.submission is not None:
        check_submission_path(Path(settings.submission), [dataset.root, out])
    segmenter = open_segmenter(settings)
    if evaluate:
        check_classes(dataset, segmenter)
    jobs = [
        Job(
            str(dataset.image_path(index)),
            functools.partial(dataset.read_image, index),
            functools.partial(dataset.label_map, index) if evaluate else None,
        )
        for index in range(len(dataset))
    ]
    writer = _Writer(segmenter, targets, overlays=overlays)
    scores = _Scores(segmenter.metadata.num_classes, crf=settings.crf is not None) if evaluate else None
    if scores is not None:
        writer.extra.append(scores)
    report, kept = _run_coco(jobs, segmenter, writer, settings, dataset, evaluate=evaluate)
    return CocoInferResult(
        num_images=len(dataset),
        classes=segmenter.metadata.classes,
        scores=scores.plain.compute() if scores is not None else None,
        crf_scores=scores.crf.compute() if scores is not None and scores.crf is not None else None,
        written=report.written,
        failures=report.failures,
        stopped=report.stopped,
        errors_file=write_errors_file(out, report),
        submission=Path(settings.submission) if kept else None,
    )


def _run_coco(jobs, segmenter, writer: _Writer, settings: InferSettings, dataset: CocoDataset, *, evaluate: bool):
    """Runs the pipeline with the submission CSV open; (report, whether the CSV was kept)."""
    names = [im.file_name for im in dataset.images]
    report = None
    try:
        with _open_submission(settings.submission) as submission:
            if submission is not None:
                writer.extra.append(lambda result: submission.add(names[result.index], result.labels))
            report = _run(jobs, segmenter, writer, settings, scores=evaluate)
            if report.failures and submission is not None:
                raise _Incomplete()  # no CSV with rows missing
    except _Incomplete:
        return report, False
    return report, settings.submission is not None
