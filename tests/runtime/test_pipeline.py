"""The pipeline (runtime/infer/pipeline.py): order, per-image failures, stopping, bounded memory, same bytes.

Most tests use a fake segmenter (NumPy only, microseconds per image) whose labels encode
the image, so order and content are checked exactly; the byte-identity tests run the real
tiny exported model over the tiny COCO split, with and without the CRF.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.infer.pipeline import THREAD_PREFIX, PipelineSettings, run_pipeline
from tseg.runtime.infer.run import InferSettings, infer_coco
from tseg.runtime.infer.stages import Job, Stages, failure_reason

CLASSES = 4


@dataclass
class _Meta:
    num_classes: int = CLASSES


class FakeSegmenter:
    """Logits whose argmax is the image's first pixel value mod CLASSES, everywhere.

    run_batch fails (TsegError) on a batch holding an image whose first pixel is 255,
    or on every batch when ``broken``.
    """

    crf = None
    tta = None
    batch_size = 64

    def __init__(self, *, broken: bool = False) -> None:
        self.broken = broken
        self.metadata = _Meta()
        self.batches: list[int] = []

    def model_inputs(self, image: np.ndarray) -> list[np.ndarray]:
        return [np.full((3, 2, 2), float(image[0, 0, 0]), np.float32)]

    def run_batch(self, batch: np.ndarray, *, check_finite: bool = True) -> np.ndarray:
        self.batches.append(len(batch))
        if self.broken or (batch[:, 0, 0, 0] == 255).any():
            raise TsegError("model.onnx: the model gave NaN or infinite scores for this image")
        logits = np.zeros((len(batch), CLASSES, 2, 2), np.float32)
        for i, value in enumerate(batch[:, 0, 0, 0].astype(int)):
            logits[i, value % CLASSES] = 1.0
        return logits


def image_of(value: int, size=(3, 5)) -> np.ndarray:
    return np.full((*size, 3), value, np.uint8)


def make_jobs(values, *, bad=(), delay=0.0, seed=0) -> list[Job]:
    """One job per value; indices in ``bad`` fail to decode; reads sleep up to ``delay`` s (random order)."""
    rng = random.Random(seed)
    pauses = [rng.random() * delay for _ in values]

    def read(index: int, value: int) -> np.ndarray:
        if pauses[index]:
            time.sleep(pauses[index])
        if index in bad:
            raise TsegError(f"cannot read image img{index}.jpg: broken data stream")
        return image_of(value)

    return [Job(f"img{i}.jpg", lambda i=i, v=v: read(i, v)) for i, v in enumerate(values)]


def collect(jobs, segmenter=None, **settings):
    segmenter = segmenter or FakeSegmenter()
    seen, failures = [], []
    report = run_pipeline(
        jobs,
        stages=Stages(segmenter),
        settings=PipelineSettings(progress=False, **settings),
        sink=lambda result: seen.append((result.index, int(result.labels[0, 0]), result.labels.shape)),
        report=failures.append,
    )
    return report, seen, failures


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


@pytest.mark.parametrize(("batch_size", "workers", "post_workers"), [(1, 0, 1), (3, 0, 1), (1, 3, 2), (4, 2, 3)])
def test_results_and_failures_come_in_input_order(batch_size, workers, post_workers):
    values = list(range(40))
    bad = {3, 4, 17, 39}
    jobs = make_jobs(values, bad=bad, delay=0.002 if workers else 0.0)
    report, seen, failures = collect(jobs, batch_size=batch_size, workers=workers, post_workers=post_workers)
    good = [i for i in range(40) if i not in bad]
    assert [index for index, _, _ in seen] == good
    assert [label for _, label, _ in seen] == [values[i] % CLASSES for i in good]
    assert all(shape == (3, 5) for _, _, shape in seen)
    assert [f.index for f in failures] == sorted(bad) == [f.index for f in report.failures]
    assert failures[0].line() == "failed: img3.jpg: cannot read image: broken data stream"
    assert report.written == len(good) and not report.stopped
    assert not pipeline_threads()


def test_batches_are_consecutive_decoded_images_of_batch_size():
    segmenter = FakeSegmenter()
    collect(make_jobs(range(11), bad={2}), segmenter, batch_size=4, workers=2)
    assert segmenter.batches == [4, 4, 2]  # 10 decoded images


def test_one_image_the_model_fails_on_is_a_failure_and_its_batch_mates_are_written():
    values = [1, 2, 255, 3, 5, 6]
    report, seen, failures = collect(make_jobs(values), batch_size=3, workers=2)
    assert [index for index, _, _ in seen] == [0, 1, 3, 4, 5]
    reason = "model.onnx: the model gave NaN or infinite scores for this image"
    assert [(f.index, f.reason) for f in failures] == [(2, reason)]


@pytest.mark.parametrize("workers", [0, 2])
def test_a_model_that_fails_on_every_image_stops_the_run(workers):
    with pytest.raises(TsegError, match="NaN or infinite"):
        collect(make_jobs(range(30)), FakeSegmenter(broken=True), batch_size=4, workers=workers)
    assert not pipeline_threads()


@pytest.mark.parametrize("workers", [0, 3])
def test_fail_fast_stops_after_the_images_before_the_first_failure(workers):
    report, seen, failures = collect(make_jobs(range(50), bad={7, 9}), batch_size=2, workers=workers, fail_fast=True)
    assert [index for index, _, _ in seen] == list(range(7))
    assert [f.index for f in failures] == [7] and report.stopped
    assert not pipeline_threads()


@pytest.mark.parametrize("workers", [0, 2])
def test_an_error_in_the_writer_stops_every_stage_promptly(workers):
    """A full disk (the writer's TsegError) ends the run without handling the remaining images."""
    handled = []

    def sink(result):
        handled.append(result.index)
        if result.index == 5:
            raise TsegError("no space left on the device to write out/5.png (nothing was replaced)")

    jobs = make_jobs(range(500))
    settings = PipelineSettings(batch_size=4, workers=workers, progress=False)
    with pytest.raises(TsegError, match="no space left"):
        run_pipeline(jobs, stages=Stages(FakeSegmenter()), settings=settings, sink=sink)
    assert handled == list(range(6))
    assert not pipeline_threads()


def test_a_bug_in_a_decode_thread_is_raised_not_reported_as_a_failure():
    def read():
        raise KeyError("bug")

    jobs = make_jobs(range(10)) + [Job("x.jpg", read)] + make_jobs(range(10))
    with pytest.raises(KeyError):
        collect(jobs, batch_size=2, workers=2)
    assert not pipeline_threads()


def interrupted_run() -> dict:
    """A threaded run that Ctrl-C (SIGINT to the process) stops while the decode threads are
    busy; what it handled and left behind. Run by the test below in a process of its own."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    handled = []

    def read(index: int) -> np.ndarray:
        if index == 20:
            os.kill(os.getpid(), signal.SIGINT)  # what Ctrl-C does, while other threads are busy
        time.sleep(0.001)
        return image_of(index % 200)

    jobs = [Job(f"img{i}.jpg", lambda i=i: read(i)) for i in range(10_000)]
    settings = PipelineSettings(batch_size=4, workers=3, progress=False)
    started = time.monotonic()
    try:
        run_pipeline(jobs, stages=Stages(FakeSegmenter()), settings=settings, sink=lambda r: handled.append(r))
    except KeyboardInterrupt:
        return {"interrupted": True, "handled": len(handled), "seconds": time.monotonic() - started,
                "threads_left": len(pipeline_threads())}
    return {"interrupted": False}


def test_ctrl_c_stops_the_threaded_run_and_leaves_no_thread():
    # In a child process: a signal sent to the test process would also meet the native thread
    # pools that earlier tests leave in it (ONNX Runtime, OpenVINO, torch), which is not what is
    # tested here, and a crash there would take the whole test run down.
    code = "import json; from tests.runtime.test_pipeline import interrupted_run; print(json.dumps(interrupted_run()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["interrupted"], result
    assert result["handled"] < 100 and result["seconds"] < 60 and result["threads_left"] == 0, result


def test_images_in_flight_stay_bounded_whatever_the_number_of_images():
    """A slow writer: decoding must wait for it, not read the whole folder into memory."""
    lock = threading.Lock()
    state = {"read": 0, "done": 0, "peak": 0}

    def read(value: int) -> np.ndarray:
        with lock:
            state["read"] += 1
            state["peak"] = max(state["peak"], state["read"] - state["done"])
        return image_of(value % 200)

    def sink(result):
        time.sleep(0.0005)
        with lock:
            state["done"] += 1

    batch, workers, post = 4, 3, 2
    jobs = [Job(f"{i}", lambda i=i: read(i)) for i in range(600)]
    settings = PipelineSettings(batch_size=batch, workers=workers, post_workers=post, progress=False)
    run_pipeline(jobs, stages=Stages(FakeSegmenter()), settings=settings, sink=sink)
    bound = (batch + workers) + batch + (batch + 2 * post) + post + 1
    assert state["done"] == 600
    assert state["peak"] <= bound, state


def test_the_sequential_path_runs_on_the_calling_thread_only():
    threads = set()
    jobs = make_jobs(range(9))
    settings = PipelineSettings(batch_size=2, workers=0, progress=False)
    sink = lambda result: threads.add(threading.get_ident())  # noqa: E731
    run_pipeline(jobs, stages=Stages(FakeSegmenter()), settings=settings, sink=sink)
    assert threads == {threading.get_ident()}


@pytest.mark.parametrize(
    ("field", "value"),
    [("batch_size", 0), ("workers", -1), ("post_workers", 0), ("batch_size", True), ("workers", 2.0)],
)
def test_bad_pipeline_settings_are_refused(field, value):
    with pytest.raises(TsegError, match=field):
        PipelineSettings(**{field: value})


def test_failure_reason_drops_the_path_the_line_already_names():
    assert failure_reason("cannot read image a/b.jpg: truncated", "a/b.jpg") == "cannot read image: truncated"
    assert failure_reason("a/b.jpg: 9 pixels is over the limit", "a/b.jpg") == "9 pixels is over the limit"
    assert failure_reason("a/b.jpg is 3x3: too big", "a/b.jpg") == "is 3x3: too big"
    assert failure_reason("model.onnx: NaN scores", "a/b.jpg") == "model.onnx: NaN scores"


# ----------------------------------------------------------------------------- same bytes, real model


def digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*.png"))
    }


@pytest.mark.parametrize("crf", [False, True], ids=["plain", "crf"])
def test_pipelined_outputs_equal_the_sequential_paths_byte_for_byte(tiny_onnx, tiny_coco_dir, tmp_path, crf):
    from tseg.runtime.segment.refine import CrfParams

    params = CrfParams(iterations=3) if crf else None

    def run(name: str, **pipeline) -> dict[str, str]:
        out = tmp_path / name
        settings = InferSettings(model=tiny_onnx, out=out, progress=False, crf=params, **pipeline)
        result = infer_coco(tiny_coco_dir / "val.json", data_root=None, settings=settings, evaluate=True)
        assert result.written == result.num_images and not result.failures
        return digests(out), result.scores, result.crf_scores

    reference, scores, crf_scores = run("sequential-1", batch_size=1, workers=0)
    assert len(reference) >= 3 and (crf_scores is not None) == crf
    for batch_size, workers, post in [(1, 1, 1), (2, 3, 2), (5, 2, 1), (3, 0, 1)]:
        got, got_scores, got_crf = run(f"b{batch_size}-w{workers}-p{post}", batch_size=batch_size, workers=workers,
                                       post_workers=post)
        assert got == reference, (batch_size, workers, post)
        assert got_scores == scores and got_crf == crf_scores


class NanSegmenter(FakeSegmenter):
    """Returns NaN scores (instead of raising) for images of value 254, as a real model would."""

    def run_batch(self, batch: np.ndarray, *, check_finite: bool = True) -> np.ndarray:
        logits = super().run_batch(batch)
        logits[batch[:, 0, 0, 0] == 254] = np.nan
        if check_finite and np.isnan(logits).any():
            raise AssertionError("the pipeline left the finiteness check on (it is the post stage's)")
        return logits


@pytest.mark.parametrize("workers", [0, 2])
def test_nan_scores_for_one_image_are_that_images_failure(workers):
    report, seen, failures = collect(make_jobs([1, 254, 2, 3]), NanSegmenter(), batch_size=2, workers=workers)
    assert [index for index, _, _ in seen] == [0, 2, 3]
    assert [f.index for f in failures] == [1] and "NaN or infinite" in failures[0].reason
