"""The training recipe: exact resume, torchrun, augmentation, cache, curves, bad settings."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from tests.tiny_coco import write_tiny_coco
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.images import resize_image, resize_labels
from tseg.train.cli import main as train_cli
from tseg.train.cli import plot_main
from tseg.train.data.cache import decoded_split
from tseg.train.data.transforms import IGNORE_INDEX, AugmentSettings, augment_pair, build_augment
from tseg.train.settings import TrainSettings
from tseg.train.trainer import train

TINY = ["--size", "32", "--batch-size", "2", "-q"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _wait_for_rows(path, count, process, timeout=240):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and len(path.read_text().strip().splitlines()) > count:
            return
        if process.poll() is not None:
            raise AssertionError(f"training exited early with {process.returncode}")
        time.sleep(0.05)
    raise AssertionError("training did not reach the epoch in time")


@pytest.mark.slow
def test_killed_run_resumes_exactly(tiny_coco_dir, tmp_path):
    common = dict(
        data=tiny_coco_dir,
        size=32,
        epochs=3,
        batch_size=2,
        lr_schedule="warmup-cosine",
        warmup_steps=2,
        scale_range=(0.7, 1.4),
        color_jitter=0.1,
        progress=False,
    )
    reference = train(TrainSettings(name="ref", runs_dir=tmp_path, **common))
    args = [
        sys.executable,
        "-m",
        "tseg.train.cli",
        "--data",
        str(tiny_coco_dir),
        "--epochs",
        "3",
        "--lr-schedule",
        "warmup-cosine",
        "--warmup-steps",
        "2",
        "--scale-aug",
        "0.7",
        "1.4",
        "--color-jitter",
        "0.1",
        "--name",
        "killed",
        "--runs-dir",
        str(tmp_path),
        *TINY,
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait_for_rows(tmp_path / "killed" / "metrics.csv", 1, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(_rows(tmp_path / "killed"))
    assert done < 3, "the run finished before it could be killed"
    train(TrainSettings(progress=False), resume=tmp_path / "killed")
    expected, got = _rows(reference.run_dir), _rows(tmp_path / "killed")
    assert len(got) == 3
    for want, have in zip(expected, got, strict=True):
        for key in ("lr", "train_loss", "val_loss", "train_miou", "val_miou"):
            assert float(have[key]) == pytest.approx(float(want[key]), rel=1e-5, abs=1e-6), (
                have["epoch"],
                key,
            )
    steps = (tmp_path / "killed" / "lr.csv").read_text().splitlines()
    assert steps == (reference.run_dir / "lr.csv").read_text().splitlines()


@pytest.mark.slow
def test_torchrun_two_processes_matches_one_process(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    assert torchrun, "torchrun is installed with torch"
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_coco(data, num_train=16, num_val=6)
    args = [
        "--data",
        str(data),
        "--size",
        "32",
        "--epochs",
        "3",
        "--batch-size",
        "4",
        "--lr",
        "3e-3",
        "--runs-dir",
        str(tmp_path / "runs"),
        "--no-hflip",
        "-q",
    ]
    single = CliRunner().invoke(train_cli, [*args, "--name", "single"])
    assert single.exit_code == 0, single.output
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node", "2", "-m", "tseg.train.cli", *args, "--name", "ddp"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["ddp", "single"], "only rank 0 writes"
    one, two = _rows(tmp_path / "runs" / "single")[-1], _rows(tmp_path / "runs" / "ddp")[-1]
    # Same samples per optimizer step and averaged gradients, but BatchNorm sees 2 images
    # per process instead of 4 (SyncBatchNorm needs CUDA): close, not bit for bit.
    assert float(two["train_loss"]) == pytest.approx(float(one["train_loss"]), abs=0.05)
    assert float(two["val_miou"]) == pytest.approx(float(one["val_miou"]), abs=0.05)
    print("one process", one["train_loss"], one["val_miou"], "two", two["train_loss"], two["val_miou"])


def test_augmentation_is_joint_reproducible_and_pads_with_ignore():
    image = torch.arange(3 * 16 * 16, dtype=torch.int64).reshape(3, 16, 16).remainder(256).to(torch.uint8)
    labels = torch.zeros(16, 16, dtype=torch.int64)
    labels[:, 8:] = 3
    augment = build_augment(AugmentSettings(hflip=True, scale_range=(0.5, 0.6), color_jitter=0.0), (16, 16))
    a = augment_pair(augment, image, labels, seed=1)
    b = augment_pair(augment, image, labels, seed=1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].shape == (3, 16, 16) and a[1].shape == (16, 16)
    assert set(a[1].unique().tolist()) <= {0, 3, IGNORE_INDEX}
    assert (a[1] == IGNORE_INDEX).any(), "a 0.5x rescale must be padded back to the size"
    # Where the image was padded the mask is ignore: geometry moved both together.
    assert torch.equal((a[1] == IGNORE_INDEX), (a[0] == 0).all(0))
    seeds = {augment_pair(augment, image, labels, seed=s)[1].sum().item() for s in range(8)}
    assert len(seeds) > 1


def test_cache_builds_once_and_equals_decoding(tiny_coco_dir, tmp_path):
    coco = CocoDataset(tiny_coco_dir / "train.json")
    first = decoded_split(coco, size=(24, 20), cache_dir=tmp_path, progress=False)
    stamp = (first.folder / "images.npy").stat().st_mtime_ns
    again = decoded_split(coco, size=(24, 20), cache_dir=tmp_path, progress=False)
    assert again.folder == first.folder and (again.folder / "images.npy").stat().st_mtime_ns == stamp
    for i in range(len(coco)):
        np.testing.assert_array_equal(first.images[i], resize_image(coco.read_image(i), (24, 20)))
        np.testing.assert_array_equal(first.labels[i], resize_labels(coco.label_map(i), (24, 20)))
    assert not list(tmp_path.glob(".*")), "no temporary folders left behind"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "1", "--warmup-steps", "50"], "warm-up of 50 steps is not shorter than the training"),
        (["--optimizer", "rmsprop"], "unknown optimizer 'rmsprop'; valid: adam, adamw, sgd"),
        (["--batch-size", "64"], "batch size 64 exceeds the 6 training images"),
        (["--sync-bn", "--device", "cpu"], "--sync-bn needs CUDA"),
        (["--lr-schedule", "linear"], "unknown LR schedule 'linear'"),
        (["--class-weights", "1,2"], "--class-weights needs 'none', 'balanced' or 4"),
    ],
)
def test_bad_settings_are_one_line_errors(tiny_coco_dir, tmp_path, args, message):
    base = [
        "--data",
        str(tiny_coco_dir),
        "--size",
        "32",
        "--batch-size",
        "2",
        "--runs-dir",
        str(tmp_path),
        "-q",
    ]
    result = CliRunner().invoke(train_cli, base + args)
    assert result.exit_code == 1
    assert result.output.count("Error:") == 1 and message in result.output, result.output


def test_resume_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    for target, message in [
        (tmp_path / "empty", "has no last.pt"),
        (tmp_path / "nope", "run folder not found"),
    ]:
        result = CliRunner().invoke(train_cli, ["--resume", str(target)])
        assert result.exit_code == 1 and message in result.output, result.output
    result = CliRunner().invoke(train_cli, ["--resume", str(tmp_path / "empty"), "--lr", "0.1"])
    assert "drop --lr" in result.output


def test_plot_runs_draws_the_three_charts(tiny_run, tmp_path):
    result = CliRunner().invoke(plot_main, [str(tiny_run.run_dir), str(tiny_run.run_dir), "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    for name in ("lr.png", "loss.png", "miou.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert (tiny_run.run_dir / "plots" / "miou.png").is_file(), "each run saves its own curves"
    bad = CliRunner().invoke(plot_main, [str(tmp_path), "-o", str(tmp_path)])
    assert bad.exit_code == 1 and "not a tseg run" in bad.output


def _spy_training(monkeypatch):
    """Records, per training-time loss call, the logits dtype and the class weights; counts optimizer steps."""
    from tseg.train import engine

    calls, steps = [], []
    real_loss, real_step = engine.segmentation_loss, torch.optim.AdamW.step

    def spy_loss(outputs, labels, spec):
        if torch.is_grad_enabled():
            calls.append((outputs["out"].dtype, spec.weight))
        return real_loss(outputs, labels, spec)

    def spy_step(self, *args, **kwargs):
        steps.append(1)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(engine, "segmentation_loss", spy_loss)
    monkeypatch.setattr(torch.optim.AdamW, "step", spy_step)
    return calls, steps


def _balanced_weights(root, size):
    """Median-frequency weights computed naively from the resized training labels."""
    coco = CocoDataset(root / "train.json")
    counts = np.zeros(coco.num_classes)
    for i in range(len(coco)):
        labels = resize_labels(coco.label_map(i), size)
        for c in range(coco.num_classes):
            counts[c] += (labels == c).sum()
    freq = counts / counts.sum()
    present = freq[freq > 0]
    return torch.tensor([np.median(present) / f if f > 0 else 0.0 for f in freq], dtype=torch.float32)


def test_recipe_options_run_together(tiny_coco_dir, tmp_path, monkeypatch):
    """AMP (bf16 on the CPU), accumulation, AdamW, balanced weights, cache, TensorBoard, step LR log.

    Each option must have its effect, not only be accepted: the forward runs in bf16, the
    balanced weights reach the loss, 3 micro-batches per epoch make 2 optimizer steps, the
    decoded cache is written, and every file gets the umask's permissions.
    """
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    calls, steps = _spy_training(monkeypatch)
    args = [
        "--data",
        str(tiny_coco_dir),
        "--size",
        "32",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--accumulate",
        "2",
        "--optimizer",
        "adamw",
        "--weight-decay",
        "0.01",
        "--class-weights",
        "balanced",
        "--amp",
        "--cache",
        "--tensorboard",
        "--lr-schedule",
        "warmup-poly",
        "--warmup-epochs",
        "0.5",
        "--name",
        "opts",
        "--runs-dir",
        str(tmp_path / "runs"),
        "-q",
    ]
    old_umask = os.umask(0o027)
    try:
        result = CliRunner().invoke(train_cli, args)
    finally:
        os.umask(old_umask)
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "opts"
    assert len(calls) == 2 * 3, "6 training images in micro-batches of 2, two epochs"
    assert len(steps) == 2 * 2, "--accumulate 2: 3 micro-batches -> 2 optimizer steps per epoch"
    lr_steps = (run / "lr.csv").read_text().splitlines()[1:]
    assert len(lr_steps) == len(steps) and float(lr_steps[0].split(",")[1]) == 0.0, "warm-up starts at 0"
    assert {dtype for dtype, _ in calls} == {torch.bfloat16}, "--amp runs the forward in bf16 autocast"
    expected = _balanced_weights(tiny_coco_dir, (32, 32))
    for _, weight in calls:
        assert weight is not None and torch.allclose(weight, expected), (weight, expected)
    assert len(set(expected.tolist())) > 1, "the split is unbalanced, so the weights differ"
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    cache = tmp_path / "cache" / "tseg" / "decoded"
    assert list(cache.iterdir()), "--cache wrote the decoded split"
    assert '"amp": true' in (run / "settings.json").read_text()
    for path in [run, *run.rglob("*"), *cache.rglob("*")]:
        want = 0o750 if path.is_dir() else 0o640
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))
    rows = _rows(run)
    best = torch.load(run / "best.pt", weights_only=True)
    best_row = max(rows, key=lambda r: float(r["val_miou"]))
    assert best["epoch"] == int(best_row["epoch"]) and best["metrics"]["val_miou"] == float(best_row["val_miou"])
