"""tseg-infer --report: the report's collector set up before a COCO run, and the page written after it."""

from __future__ import annotations

import json
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.report.collect import ReportCollector
from tseg.runtime.report.write import ReportSettings, link_from, split_json, write_report


def tseg_version() -> str:
    try:
        return version("tseg")
    except PackageNotFoundError:
        return "0+unknown"


def start_report(report: ReportSettings, *, dataset: CocoDataset, targets: list[Path], num_classes: int,
                 crf: bool) -> ReportCollector:
    """The collector of a run over ``dataset`` whose label PNGs go to ``targets`` (input order)."""
    names = [image.file_name for image in dataset.images]
    links = [link_from(report.folder, target) for target in targets]
    return ReportCollector(folder=report.folder, num_classes=num_classes, crf=crf, count=report.images,
                           names=names, label_pngs=links)


def run_facts(settings, segmenter, dataset: CocoDataset, command: str | None) -> list[tuple[str, str]]:
    """(name, value) pairs describing a run: what the report's settings table shows.

    Args:
        settings: the run's :class:`~tseg.runtime.infer.run.InferSettings`.
        segmenter: the Segmenter that ran.
        dataset: the split.
        command: the command line, or None.
    """
    meta = segmenter.metadata
    facts = [
        ("model", str(settings.model)),
        ("architecture", meta.model_name),
        ("precision", meta.precision),
        ("device", f"{settings.device} ({', '.join(segmenter.providers)})"),
        ("input size", f"{meta.input_size[0]}x{meta.input_size[1]} (height x width)"),
        ("split", f"{dataset.json_path} ({len(dataset)} images, data root {dataset.root})"),
        ("CRF", json.dumps(asdict(segmenter.crf)) if segmenter.crf is not None else "off"),  # device resolved
        ("TTA", json.dumps(asdict(settings.tta)) if settings.tta is not None else "off"),
        ("tseg", f"{tseg_version()} (the model was exported by tseg {meta.tseg_version})"),
    ]
    if command:
        facts.append(("command", command))
    return facts


def finish_report(report: ReportSettings, *, collector: ReportCollector, settings, segmenter,
                  dataset: CocoDataset, scores) -> Path:
    """Writes the page of a finished run; ``scores`` holds the confusion matrices (``plain``, ``crf``)."""
    meta = segmenter.metadata
    crf = scores.crf
    return write_report(
        report,
        collector=collector,
        title=f"tseg evaluation: {dataset.json_path.name} with {Path(settings.model).name}",
        facts=run_facts(settings, segmenter, dataset, report.command),
        classes=meta.classes,
        palette=meta.palette,
        scores=scores.plain.compute(),
        matrix=scores.plain.matrix,
        crf_scores=crf.compute() if crf is not None else None,
        crf_matrix=crf.matrix if crf is not None else None,
        split=split_json(dataset.json_path, dataset.root),
    )


def check_report_settings(report: ReportSettings | None, *, evaluate: bool) -> None:
    """A report needs the scores: refuses ``report`` without ``evaluate``."""
    if report is not None and not evaluate:
        raise TsegError("report needs evaluate=True (the page shows the scores)", parameter="report")
