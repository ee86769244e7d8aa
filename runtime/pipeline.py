"""Pipelined inference: decoding, the model, post-processing and writing overlap.

Stages, each fed through a bounded window so memory stays flat on any number of images::

    decode + preprocess   `workers` threads (Pillow and NumPy release the GIL)
    the model             batches of `batch_size` through Segmenter.run_batch, on the calling thread
    post-processing       `post_workers` threads (upsampled argmax, or the CRF: Numba releases the GIL)
    writing               one thread that takes results IN INPUT ORDER (PNG, overlay, CSV row, scores)

``workers=0`` is the sequential path: the very same stage functions, called inline on
the calling thread, so both paths give the same bytes for any batch size and worker count
(batches are formed the same way: consecutive images that decoded).

An image that cannot be decoded, or that the model fails on, is a per-item :class:`Failure`
(reported in input order); anything else (a broken model, a full disk, Ctrl-C, a bug) stops
every stage promptly and is raised on the calling thread once all pipeline threads are gone.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from tseg.runtime.cli_errors import one_line
from tseg.runtime.errors import TsegError
from tseg.runtime.postprocess import upsample_labels
from tseg.runtime.tta import labels_from_probs, logits_from_probs, tta_probs

THREAD_PREFIX = "tseg-pipeline-"  # the CRF's own pool is "tseg-crf" and outlives a run by design
MAX_BATCH_SIZE = 1024
MAX_WORKERS = 64


@dataclass(frozen=True)
class PipelineSettings:
    """How the stages run.

    Attributes:
        batch_size: images per model run (the graph's batch axis is dynamic).
        workers: decode/preprocess threads; 0 runs every stage inline on the calling thread.
        post_workers: post-processing (upsampling, CRF) threads when ``workers`` > 0.
        fail_fast: stop at the first failed image instead of carrying on.
        progress: show a progress bar (images/s) on stderr.
    """

    batch_size: int = 8
    workers: int = 2
    post_workers: int = 1
    fail_fast: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("batch_size", self.batch_size, 1, MAX_BATCH_SIZE),
            ("workers", self.workers, 0, MAX_WORKERS),
            ("post_workers", self.post_workers, 1, MAX_WORKERS),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise TsegError(f"{name} must be an integer in {low}..{high}, got {value!r}")


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


@dataclass(frozen=True)
class PipelineReport:
    """What a run did: images handed to the sink, failures in input order, a --fail-fast stop."""

    written: int
    failures: tuple[Failure, ...]
    stopped: bool = False


@dataclass
class _Decoded:
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
        segmenter: a :class:`~tseg.runtime.segmenter.Segmenter` (its ``crf`` and ``tta``
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

    def decode(self, index: int, job: Job) -> _Decoded | Failure:
        """Reads and preprocesses one image (thread-safe); a bad image is a Failure."""
        try:
            image = job.read()
            truth = job.truth() if job.truth is not None else None
            tensor = None if self.tta is not None else self.segmenter.preprocess(image)
        except TsegError as err:
            return Failure(index, job.source, failure_reason(str(err), job.source))
        keep = image if self._needs_image else None
        return _Decoded(index, job, (image.shape[0], image.shape[1]), tensor, keep, truth)

    def run(self, batch: list[_Decoded]) -> list[np.ndarray | Failure]:
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

    def _run_one(self, item: _Decoded) -> np.ndarray | TsegError:
        try:
            logits = self.segmenter.run_batch(item.tensor[None], check_finite=False)[0]
        except TsegError as err:
            return err
        self._model_ran = True
        return logits

    def post(self, item: _Decoded, logits: np.ndarray) -> Result | Failure:
        """Labels at the image's size: the upsampled argmax, or the CRF (thread-safe)."""
        try:
            plain = None
            if self.tta is not None:  # as Segmenter.predict_tta, keeping the labels before the CRF
                averaged = tta_probs(self.segmenter, item.image, self.tta)
                plain = labels_from_probs(averaged) if self.crf is None or self.plain_labels else None
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


# --- running the stages ---------------------------------------------------------------------------


class _FailFast(Exception):
    """Raised by the writer at the first failure under --fail-fast."""


class _Inline:
    """An executor that runs each task at once on the calling thread (the sequential path)."""

    def submit(self, fn, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))  # exceptions propagate at once, KeyboardInterrupt included
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


def _done(value) -> Future:
    future: Future = Future()
    future.set_result(value)
    return future


class _Writer:
    """Hands outcomes to the sink in input order, on its own thread (or inline)."""

    def __init__(self, sink, report, *, fail_fast: bool, bar, threaded: bool, maxsize: int) -> None:
        self.sink, self.report, self.fail_fast, self.bar = sink, report, fail_fast, bar
        self.written = 0
        self.failures: list[Failure] = []
        self.error: BaseException | None = None
        self._aborted = False
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if threaded:
            self._queue = queue.Queue(maxsize=maxsize)
            self._thread = threading.Thread(target=self._loop, name=THREAD_PREFIX + "writer", daemon=True)
            self._thread.start()

    def _handle(self, outcome: Result | Failure) -> None:
        if isinstance(outcome, Failure):
            self.failures.append(outcome)
            self.report(outcome)
            self.bar.update(1)
            if self.fail_fast:
                raise _FailFast()
            return
        self.sink(outcome)
        self.written += 1
        self.bar.update(1)

    def _loop(self) -> None:
        while True:
            future = self._queue.get()
            if future is None:
                return
            if self.error is not None or self._aborted:
                continue  # draining: the run is stopping
            try:
                self._handle(future.result())
            except BaseException as err:  # handed to the calling thread, which stops the run
                self.error = err

    def check(self) -> None:
        """Raises on the calling thread what stopped the writer (if anything)."""
        if self.error is not None:
            raise self.error

    def put(self, future: Future) -> None:
        if self._queue is None:
            self._handle(future.result())
            return
        while True:
            self.check()
            try:
                self._queue.put(future, timeout=0.05)
                return
            except queue.Full:
                continue

    def finish(self) -> None:
        """Waits for every outcome to be handled; raises what stopped the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        self.check()

    def abort(self) -> None:
        """Stops handling outcomes and waits for the thread to end (pending outcomes are dropped)."""
        self._aborted = True
        if self._thread is not None:
            self._queue.put(None)  # the thread drains without handling, so this never blocks for long
            self._thread.join()
            self._thread = None


def run_pipeline(
    jobs: Sequence[Job],
    *,
    stages: Stages,
    settings: PipelineSettings,
    sink: Callable[[Result], None],
    report: Callable[[Failure], None] = lambda failure: None,
) -> PipelineReport:
    """Segments ``jobs``, handing each result to ``sink`` in input order.

    Args:
        jobs: the inputs, in order.
        stages: the stage functions (a Segmenter and what the writer needs).
        settings: batch size, worker threads, --fail-fast, progress bar.
        sink: called on the writer thread, in input order, once per segmented image
            (it writes the PNG, the overlay, the CSV row, updates scores...).
        report: called on the writer thread for each failure, in input order.

    Returns:
        How many results went to ``sink``, the failures, and whether --fail-fast stopped the run.

    Raises:
        Whatever stops the run (a broken model, a full disk, Ctrl-C, an exception from
        ``sink``), after every pipeline thread has ended.
    """
    threaded = settings.workers > 0
    window = settings.batch_size + max(settings.workers, 1)  # decoded images ahead of the model
    bar = tqdm(total=len(jobs), desc="infer", unit="img", disable=not settings.progress, dynamic_ncols=True)
    decoders = ThreadPoolExecutor(settings.workers, THREAD_PREFIX + "decode") if threaded else _Inline()
    posters = ThreadPoolExecutor(settings.post_workers, THREAD_PREFIX + "post") if threaded else _Inline()
    writer = _Writer(
        sink,
        report,
        fail_fast=settings.fail_fast,
        bar=bar,
        threaded=threaded,
        maxsize=settings.batch_size + 2 * settings.post_workers,
    )
    stopped = False
    try:
        _feed(jobs, stages, settings.batch_size, window, decoders, posters, writer)
        writer.finish()
    except _FailFast:
        stopped = True
    finally:
        writer.abort()
        decoders.shutdown(wait=True, cancel_futures=True)
        posters.shutdown(wait=True, cancel_futures=True)
        bar.close()
    return PipelineReport(written=writer.written, failures=tuple(writer.failures), stopped=stopped)


def _feed(jobs, stages: Stages, batch_size: int, window: int, decoders, posters, writer: _Writer) -> None:
    """The calling thread's loop: decoded images in order -> batches -> post-processing -> writer."""
    pending: deque[Future] = deque()
    upcoming = iter(enumerate(jobs))
    batch: list[_Decoded | Failure] = []

    def refill() -> None:
        while len(pending) < window:
            nxt = next(upcoming, None)
            if nxt is None:
                return
            pending.append(decoders.submit(stages.decode, *nxt))

    refill()
    while pending:
        writer.check()
        batch.append(pending.popleft().result())
        refill()
        if sum(isinstance(entry, _Decoded) for entry in batch) == batch_size:
            _flush(batch, stages, posters, writer)
            batch = []
    if batch:
        _flush(batch, stages, posters, writer)


def _flush(batch: list[_Decoded | Failure], stages: Stages, posters, writer: _Writer) -> None:
    """Runs the decoded images of ``batch`` through the model; hands every entry on, in order."""
    decoded = [entry for entry in batch if isinstance(entry, _Decoded)]
    outcomes = iter(stages.run(decoded) if decoded else [])
    for entry in batch:
        if isinstance(entry, Failure):
            writer.put(_done(entry))
            continue
        logits = next(outcomes)
        writer.put(_done(logits) if isinstance(logits, Failure) else posters.submit(stages.post, entry, logits))
