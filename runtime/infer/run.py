"""Batch inference over files, folders or a COCO split, writing label PNGs (and overlays, a CSV).

The images go through :mod:`tseg.runtime.infer.pipeline` (decoding, the model, post-processing and
writing overlap); an image that cannot be read or segmented is reported and the others are
still written (see :class:`InferResult`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import save_label_png
from tseg.runtime.data.metrics import ConfusionMatrix, SegmentationScores
from tseg.runtime.errors import TsegError, logger
from tseg.runtime.files import atomic_write_bytes
from tseg.runtime.images import find_images, read_image
from tseg.runtime.infer.outputs import check_report_file, plan_overlays, plan_targets
from tseg.runtime.infer.pipeline import PipelineReport, run_pipeline
from tseg.runtime.infer.report_run import check_report_settings, finish_report, start_report
from tseg.runtime.infer.settings import InferSettings, open_segmenter
from tseg.runtime.infer.stages import Failure, Job, Result, Stages
from tseg.runtime.paths import Input, Inputs, Output, check_outputs
from tseg.runtime.report.write import check_report_folder
from tseg.runtime.segment.refine import CrfParams, crf_file_for
from tseg.runtime.segment.segmenter import Segmenter

ERRORS_FILE = "errors.txt"  # the failures of a run, in ``out``
ERRORS_HEADER = "# tseg-infer: images that could not be segmented (failed: SOURCE: reason)\n"
EVAL_FILE = "eval.json"  # the scores of an evaluated COCO run, in ``out``


@dataclass(frozen=True)
class InferResult:
    """What :func:`infer_paths` did.

    Attributes:
        written: the label PNGs written, in input order.
        failures: the images that failed, in input order (also in ``errors_file``).
        stopped: ``fail_fast`` stopped the run at the first failure.
        errors_file: ``out``/errors.txt when anything failed, else None.
        providers: what ran the model (:attr:`Segmenter.providers
            <tseg.runtime.segment.segmenter.Segmenter.providers>`: with device "auto", what it chose).
        crf: the CRF's settings as it ran (its device "auto" resolved: :attr:`Segmenter.crf
            <tseg.runtime.segment.segmenter.Segmenter.crf>`), or None without a CRF.
    """

    written: list[Path]
    failures: tuple[Failure, ...] = ()
    stopped: bool = False
    errors_file: Path | None = None
    providers: tuple[str, ...] = ()
    crf: CrfParams | None = None


def log_failure(failure: Failure) -> None:
    """What a run does with an image that failed unless told otherwise (``on_failure``): logs
    ``failed: SOURCE: reason`` as a warning of the ``tseg`` logger (the failures are in the result too)."""
    logger.warning(failure.line())


def write_errors_file(out: Path, report: PipelineReport) -> Path | None:
    """Writes ``out``/errors.txt (atomically) when anything failed; removes tseg's stale one otherwise."""
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
            from tseg.runtime.segment.overlay import save_overlay

            save_overlay(self.overlays[result.index], result.image, result.labels, self.classes, self.palette)
        for extra in self.extra:
            extra(result)
        self.written.append(self.targets[result.index])


def _run(jobs: list[Job], segmenter: Segmenter, writer: _Writer, settings: InferSettings, *,
         on_failure: Callable[[Failure], None] | None, scores: bool = False):
    pipeline = settings.pipeline()
    pictures = settings.report is not None and settings.report.images > 0
    stages = Stages(
        segmenter,
        keep_image=settings.overlay is not None or pictures,
        plain_labels=scores,
        crf_threads=1 if pipeline.workers > 0 and pipeline.post_workers > 1 else None,
    )
    if segmenter.batch_size < pipeline.batch_size:  # a graph whose batch axis is fixed at 1
        pipeline = dataclasses.replace(pipeline, batch_size=segmenter.batch_size)
    report = log_failure if on_failure is None else on_failure
    return run_pipeline(jobs, stages=stages, settings=pipeline, sink=writer, report=report)


def infer_paths(paths: list[str | Path], *, settings: InferSettings,
                on_failure: Callable[[Failure], None] | None = None) -> InferResult:
    """Segments image files and folders; one palette PNG per image.

    Images found in a folder keep their path relative to that folder under
    ``settings.out``. EXIF orientation is applied (photos from phones). Before
    any work, ``settings.out`` is checked to lie outside the inputs' folders and
    every target to be distinct, inside it, and not an existing non-label file.
    An image that cannot be read or segmented is reported (``on_failure``, errors.txt,
    the result) and the others are still written. Nothing is printed.

    Args:
        paths: image files and folders.
        settings: model, output folder, device, pipeline.
        on_failure: called with each failure as it happens (in input order, on the
            pipeline's writer thread); default: :func:`log_failure`.

    Returns:
        The PNG files written and the failures, in input order.

    Raises:
        TsegError: bad paths or output folder, or a bad model (before any work), or
            what stops a run (the model failing on every image, a full disk).
    """
    out = Path(settings.out)
    images = find_images(paths)
    unique: dict[Path, tuple[Path, Path]] = {}
    for path, relative in images:
        unique.setdefault(path.resolve(), (path, relative))  # the same file given twice is segmented once
    images = list(unique.values())
    given = [Path(p) for p in paths]
    # A file given directly: its folder counts as an input folder too (results never go beside photos).
    folders = [Input("paths", p if p.is_dir() else p.parent, folder=True) for p in given]
    inputs = check_run_outputs(settings, [*folders, *(Input("paths", path) for path, _ in images)])
    targets = plan_targets(out, [(str(path), relative) for path, relative in images], inputs)
    overlays = plan_overlays(settings.overlay, [r for _, r in images], inputs) if settings.overlay else None
    check_report_file(out / ERRORS_FILE, inputs)
    segmenter = open_segmenter(settings)
    jobs = [Job(str(path), functools.partial(read_image, path, exif_transpose=True)) for path, _ in images]
    writer = _Writer(segmenter, targets, overlays=overlays)
    report = _run(jobs, segmenter, writer, settings, on_failure=on_failure)
    errors = write_errors_file(out, report)
    return InferResult(written=writer.written, failures=report.failures, stopped=report.stopped, errors_file=errors,
                       providers=tuple(segmenter.providers), crf=segmenter.crf)


def check_run_outputs(settings: InferSettings, inputs: list[Input]) -> Inputs:
    """Refuses ``out``, ``overlay`` and ``submission`` when they are, or lie in, an input (before any work).

    Args:
        settings: the run's outputs and model.
        inputs: the images and their folders (the model and its crf.json are added here).

    Returns:
        All the run's inputs, for checking each planned file.
    """
    model = Path(settings.model)
    known = Inputs([*inputs, Input("model", model), Input("crf.json", crf_file_for(model))])
    outputs = [Output("out", Path(settings.out), folder=True)]
    if settings.overlay is not None:
        outputs.append(Output("overlay", Path(settings.overlay), folder=True))
    if settings.submission is not None:
        outputs.append(Output("submission", Path(settings.submission)))
    if settings.report is not None:
        outputs.append(Output("report", Path(settings.report.folder), folder=True))
    check_outputs(outputs, known)
    if settings.report is not None:
        check_report_folder(Path(settings.report.folder))
    return known


def check_classes(dataset: CocoDataset, segmenter: Segmenter) -> None:
    """Refuses scoring a model against a split with another number of classes (names may differ: warned)."""
    model_classes = segmenter.metadata.classes
    dataset.check_model_classes(model_classes)
    if tuple(model_classes) != tuple(dataset.classes):
        logger.warning(
            f"WARNING: class names differ between the model ({', '.join(model_classes)}) and"
            f" {dataset.json_path.name} ({', '.join(dataset.classes)}); comparing by label index"
        )


@dataclass(frozen=True)
class CocoInferResult:
    """What :func:`infer_coco` did: images written and, when evaluating, the scores.

    ``scores`` are of the model alone; ``crf_scores`` after the CRF (when one ran); both
    over the images written (when some failed, they are not the split's scores). ``providers``
    and ``crf``: what ran the model and the CRF's settings as it ran, as :class:`InferResult`'s.
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
    report: Path | None = None
    providers: tuple[str, ...] = ()
    crf: CrfParams | None = None


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


def _open_submission(path: Path | None):
    if path is None:
        return nullcontext(None)
    from tseg.runtime.data.submission import SubmissionWriter

    return SubmissionWriter(path, what="submission")


def infer_coco(
    json_path: str | Path,
    *,
    data_root: str | Path | None,
    settings: InferSettings,
    evaluate: bool,
    on_failure: Callable[[Failure], None] | None = None,
) -> CocoInferResult:
    """Segments the images of a COCO split, keeping their relative paths (nothing is printed).

    Args:
        json_path: the split (e.g. val.json).
        data_root: folder the file names are relative to (default: the JSON's folder).
        settings: model, output folder, device, pipeline, submission CSV.
        evaluate: compare with the split's annotations and return the scores.
        on_failure: called with each image that fails, as :func:`infer_paths`'s.

    Returns:
        The number of images, the model's classes, the failures and, when ``evaluate``,
        scores from one confusion matrix. The submission CSV and the report
        (``settings.report``) are written only when every image was segmented.

    Raises:
        TsegError: ``settings.out`` is or lies inside the data root, two images
            share a label PNG, or the data or the model is bad (all before any work),
            or what stops a run (the model failing on every image, a full disk).
    """
    out = Path(settings.out)
    check_report_settings(settings.report, evaluate=evaluate)
    dataset = CocoDataset(json_path, root=data_root)
    images = [Input("an image of the split", dataset.image_path(index)) for index in range(len(dataset))]
    split = [Input("the COCO split", dataset.json_path), Input("the data root", dataset.root, folder=True)]
    inputs = check_run_outputs(settings, [*split, *images])
    if evaluate and not dataset.has_annotations:
        raise TsegError(f"cannot evaluate: {dataset.json_path} has no annotations")
    where = dataset.json_path.name
    relatives = [Path(im.file_name) for im in dataset.images]
    sources = [(f"{where} image {im.id} ({im.file_name})", Path(im.file_name)) for im in dataset.images]
    targets = plan_targets(out, sources, inputs)
    overlays = plan_overlays(settings.overlay, relatives, inputs) if settings.overlay else None
    if evaluate:
        check_report_file(out / EVAL_FILE, inputs)
    check_report_file(out / ERRORS_FILE, inputs)
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
    collector = None
    if settings.report is not None:
        collector = start_report(settings.report, dataset=dataset, targets=targets,
                                 num_classes=segmenter.metadata.num_classes, crf=settings.crf is not None)
        writer.extra.append(collector)
    try:
        report, kept = _run_coco(jobs, segmenter, writer, settings, dataset, evaluate=evaluate,
                                 on_failure=on_failure)
    except BaseException:
        if collector is not None:
            collector.discard()
        raise
    page = None
    if collector is not None and report.failures:
        collector.discard()  # the scores of part of the split: no report
    elif collector is not None:
        page = finish_report(settings.report, collector=collector, settings=settings, segmenter=segmenter,
                             dataset=dataset, scores=scores)
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
        report=page,
        providers=tuple(segmenter.providers),
        crf=segmenter.crf,
    )


def _run_coco(jobs, segmenter, writer: _Writer, settings: InferSettings, dataset: CocoDataset, *, evaluate: bool,
              on_failure: Callable[[Failure], None] | None):
    """Runs the pipeline with the submission CSV open; (report, whether the CSV was kept)."""
    names = [im.file_name for im in dataset.images]
    report = None
    try:
        with _open_submission(settings.submission) as submission:
            if submission is not None:
                writer.extra.append(lambda result: submission.add(names[result.index], result.labels))
            report = _run(jobs, segmenter, writer, settings, on_failure=on_failure, scores=evaluate)
            if report.failures and submission is not None:
                raise _Incomplete()  # no CSV with rows missing
    except _Incomplete:
        return report, False
    return report, settings.submission is not None
