"""The per-image work of tseg-infer: decode, the model on a batch, post-processing.

Shared by the threaded pipeline and the sequential path (:mod:`tseg.runtime.infer.pipeline`), so
both give the same bytes. Each stage turns a bad image into a :class:`Failure` (one line)
instead of raising; what stops a whole run (a broken model) is raised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from tseg.runtime.cli_errors import one_line
from tseg.runtime.errors import TsegError
from tseg.runtime.segment.steps import finish, run_inputs


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
    inputs: list[np.ndarray]  # (3, h, w) float32 model inputs: one, or one per TTA view
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
            settings apply; its ``batch_size`` is the most inputs, TTA views included, per model run).
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
        self._needs_image = keep_image or self.crf is not None
        self._model_ran = False  # set once the model has segmented one image
        self._logits_on_device = getattr(segmenter, "logits_on_device", False) and not self.plain_labels

    def decode(self, index: int, job: Job) -> Decoded | Failure:
        """Reads and preprocesses one image (thread-safe); a bad image is a Failure."""
        try:
            image = job.read()
            truth = job.truth() if job.truth is not None else None
            inputs = self.segmenter.model_inputs(image)
        except TsegError as err:
            return Failure(index, job.source, failure_reason(str(err), job.source))
        keep = image if self._needs_image else None
        return Decoded(index, job, (image.shape[0], image.shape[1]), inputs, keep, truth)

    def run(self, batch: list[Decoded]) -> list[list[np.ndarray] | Failure]:
        """Per image, the (C, h, w) logits of its inputs (TTA views included), or a Failure
        for an image the model fails on.

        A batch that fails is rerun one image at a time, so one bad image does not
        take its batch with it; when every image of the first batch fails on its
        own, the model is broken and the error is raised (stopping the run).
        """
        try:
            logits = self._run_inputs(batch)
            self._model_ran = True
            return logits
        except TsegError as batch_error:
            errors: list[list[np.ndarray] | TsegError] = [batch_error] if len(batch) == 1 else []
        errors = errors or [self._run_one(item) for item in batch]
        if not self._model_ran and all(isinstance(e, TsegError) for e in errors):
            raise errors[0]  # not one image has run: the model itself is broken
        return [
            Failure(item.index, item.job.source, failure_reason(str(e), item.job.source))
            if isinstance(e, TsegError)
            else e
            for item, e in zip(batch, errors, strict=True)
        ]

    def _run_inputs(self, batch: list[Decoded]) -> list[list[np.ndarray]]:
        # Finite scores are checked after the model, at 1/C of the cost (see Segmenter.run_batch);
        # with the model and the CRF on CUDA the logits stay on the GPU (only labels come back).
        gpu = {"on_device": True} if self._logits_on_device else {}
        run = partial(self.segmenter.run_batch, check_finite=False, **gpu)
        return run_inputs(run, [item.inputs for item in batch], batch_size=self.segmenter.batch_size)

    def _run_one(self, item: Decoded) -> list[np.ndarray] | TsegError:
        try:
            (logits,) = self._run_inputs([item])
        except TsegError as err:
            return err
        self._model_ran = True
        return logits

    def post(self, item: Decoded, logits: list[np.ndarray]) -> Result | Failure:
        """Labels at the image's size: the upsampled argmax or the TTA average, then the CRF if set (thread-safe)."""
        try:
            outcome = finish(logits, size=item.size, image=item.image, crf=self.crf, tta=self.tta,
                             crf_threads=self.crf_threads, plain=self.plain_labels)
        except TsegError as err:
            return Failure(item.index, item.job.source, failure_reason(str(err), item.job.source))
        image = item.image if self.keep_image else None
        return Result(item.index, item.job, outcome.labels, plain=outcome.plain, truth=item.truth, image=image)
