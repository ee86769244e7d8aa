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

from tqdm import tqdm

from tseg.runtime.errors import TsegError
from tseg.runtime.infer.stages import Decoded, Failure, Job, Result, Stages
from tseg.runtime.model.metadata import MAX_BATCH_SIZE

THREAD_PREFIX = "tseg-pipeline-"  # the CRF's own pool is "tseg-crf" and outlives a run by design
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
class PipelineReport:
    """What a run did: images handed to the sink, failures in input order, a --fail-fast stop."""

    written: int
    failures: tuple[Failure, ...]
    stopped: bool = False


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
    batch: list[Decoded | Failure] = []

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
        if sum(isinstance(entry, Decoded) for entry in batch) == batch_size:
            _flush(batch, stages, posters, writer)
            batch = []
    if batch:
        _flush(batch, stages, posters, writer)


def _flush(batch: list[Decoded | Failure], stages: Stages, posters, writer: _Writer) -> None:
    """Runs the decoded images of ``batch`` through the model; hands every entry on, in order."""
    decoded = [entry for entry in batch if isinstance(entry, Decoded)]
    outcomes = iter(stages.run(decoded) if decoded else [])
    for entry in batch:
        if isinstance(entry, Failure):
            writer.put(_done(entry))
            continue
        logits = next(outcomes)
        writer.put(_done(logits) if isinstance(logits, Failure) else posters.submit(stages.post, entry, logits))
