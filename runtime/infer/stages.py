"""The per-image work of tseg-infer: decode, the model on a batch, post-processing.

Shared by the threaded pipeline and the sequential path (:mod:`tseg.runtime.infer.pipeline`), so
both give the same bytes. Each stage turns a bad image into a :class:`Failure` (one line)
instead of raising; what stops a whole run (a broken model) is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tseg.runtime.cli_errors import one_line
from tseg.runtime.errors import TsegError
from tseg.runtime.segment.scores import argmax_classes
from tseg.runtime.segment.tta import logits_from_probs, tta_probs
from tseg.runtime.segment.upsample import upsample_labels


@dataclass(frozen=True)
class Job:
    """One input image.

    Attributes:
        source: the input as the user knows it (a path, or "val.json image 3 (a.jpg)").
        read: decodes it: () -> (H, W, 3) uint8. TsegError = this image failed.
        truth: () -> (H, W) ground-truth labels, when scoring; None otherwise.
    """

    source: str
    read: Callable[[], np.ndarray]
    truth: Callable[[], np.ndarray] | None = None


@dataclass(frozen=True)
class Failure:
    """An image that could not be segmented, and why (one line)."""

    index: int
    source: str
    reason: str

    def line(self) -> str:
        """``failed: SOURCE: reason``, as printed on stderr and written to errors.txt."""
        return one_line(f"failed: {self.source}: {self.reason}")


@dataclass(frozen=True)
class Result:
    """One segmented image, as handed to the writer.

    Attributes:
        index: position in the jobs.
        job: the input.
        labels: (H, W) labels: after the CRF when one is set, else the model's.
        plain: (H, W) labels without the CRF (only when asked for, e.g. to score both).
        truth: (H, W) ground truth, when the job has one.
        image: (H, W, 3) uint8, kept only when post-processing or the writer needs it.
    """

    index: int
    job: Job
    labels: np.ndarray
    plain: np.ndarray | None = None
    truth: np.ndarray | None = None
    image: np.ndarray | None = None


@dataclass
class Decoded:
    index: int
    job: Job
    size: tuple[int, int]
    tensor: np.ndarray  # (3, h, w) float32, the model's input
    image: np.ndarray | None
    truth: np.ndarray | None


def failure_reason(message: str, source: str) -> str:
    """An error message without the path that the ``failed: SOURCE:`` prefix already names."""
    if message.startswith(source) and message[len(source) : len(source) + 1] in (":", " "):
        return message[len(source) :].lstrip(": ")
    return message.replace(f" {source}:", ":", 1)


class Stages:
    """The stage functions, shared by the threaded and the sequential path.

    Args:
        segmenter: a :class:`~tseg.runtime.segment.segmenter.Segmenter` (its ``crf`` and ``tta``
            settings apply).
        keep_image: hand the decoded image to the writer (e.g. for overlays).
        plain_labels: also compute the labels without the CRF (to score both).
        crf_threads: threads of each CRF run (None: every core); with several
            post-processing threads, one each wastes less time at the CRF's barriers.
    """

    def __init__(self, segmenter, *, keep_image: bool = False, plain_labels: bool = False,
                 crf_threads: int | None = None) -> None:
        self.segmenter = segmenter
        self.crf_threads = crf_threads
        self.crf = segmenter.crf
        self.tta = segmenter.tta
        self.keep_image = keep_image
        self.plain_labels = plain_labels and self.crf is not None
        self._needs_image = keep_image or self.crf is not None or self.tta is not None
        self._model_ran = False  # set once the model has segmented one image

    def decode(self, index: int, job: Job) -> Decoded | Failure:
        """Reads and preprocesses one image (thread-safe); a bad image is a Failure."""
        try:
            image = job.read()
            truth = job.truth() if job.truth is not None else None
            tensor = None if self.tta is not None else self.segmenter.preprocess(image)
        except TsegError as err:
            return Failure(index, job.source, failure_reason(str(err), job.source))
        keep = image if self._needs_image else None
        return Decoded(index, job, (image.shape[0], image.shape[1]), tensor, keep, truth)

    def run(self, batch: list[Decoded]) -> list[np.ndarray | Failure]:
        """(C, h, w) logits per image, or a Failure for an image the model fails on.

        A batch that fails is rerun one image at a time, so one bad image does not
        take its batch with it; when every image of the first batch fails on its
        own, the model is broken and the error is raised (stopping the run).
        """
        if self.tta is not None:  # test-time augmentation runs its views per image (post stage)
            return [np.empty(0, np.float32) for _ in batch]
        try:
            logits = list(self.segmenter.run_batch(np.stack([item.tensor for item in batch]), check_finite=False))
            self._model_ran = True
            return logits
        except TsegError as batch_error:
            errors: list[np.ndarray | TsegError] = [batch_error] if len(batch) == 1 else []
        errors = errors or [self._run_one(item) for item in batch]
        if not self._model_ran and all(isinstance(e, TsegError) for e in errors):
            raise errors[0]  # not one image has run: the model itself is broken
        return [
            Failure(item.index, item.job.source, failure_reason(str(e), item.job.source))
            if isinstance(e, TsegError)
            else e
            for item, e in zip(batch, errors, strict=True)
        ]

    def _run_one(self, item: Decoded) -> np.ndarray | TsegError:
        try:
            logits = self.segmenter.run_batch(item.tensor[None], check_finite=False)[0]
        except TsegError as err:
            return err
        self._model_ran = True
        return logits

    def post(self, item: Decoded, logits: np.ndarray) -> Result | Failure:
        """Labels at the image's size: the upsampled argmax, or the CRF (thread-safe)."""
        try:
            plain = None
            if self.tta is not None:  # as Segmenter.predict_tta, keeping the labels before the CRF
                averaged = tta_probs(self.segmenter, item.image, self.tta)
                plain = argmax_classes(averaged) if self.crf is None or self.plain_labels else None
                # In place: the averaged probabilities are not needed once the plain labels exist.
                logits = logits_from_probs(averaged, in_place=True) if self.crf is not None else None
                labels = (
                    self.segmenter.postprocess(logits, item.image, crf_threads=self.crf_threads).labels
                    if logits is not None
                    else plain
                )
            elif self.crf is not None:
                labels = self.segmenter.postprocess(logits, item.image, crf_threads=self.crf_threads).labels
                plain = upsample_labels(logits, item.size) if self.plain_labels else None
            else:
                labels = upsample_labels(logits, item.size)
        except TsegError as err:
            return Failure(item.index, item.job.source, failure_reason(str(err), item.job.source))
        image = item.image if self.keep_image else None
        return Result(item.index, item.job, labels, plain=plain, truth=item.truth, image=image)
