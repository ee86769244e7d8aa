"""Runs that go wrong: full disk, stale temp files, best-epoch choice, ignore label, device, permissions."""

from __future__ import annotations

import csv
import dataclasses
import errno
import hashlib
import os
import shutil

import pytest
import torch
from click.testing import CliRunner

from tests.tiny_coco import write_tiny_coco
from tseg.train import engine, trainer
from tseg.train.checkpoints import load_checkpoint
from tseg.train.cli import main as train_cli
from tseg.train.data.transforms import AugmentSettings, augment_pair, build_augment
from tseg.train.settings import TrainSettings


def _rows(run_dir):
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_crop_padding_uses_the_runs_ignore_label():
    image = torch.full((3, 16, 16), 200, dtype=torch.uint8)
    labels = torch.ones(16, 16, dtype=torch.int64)
    augment = build_augment(
        AugmentSettings(hflip=False, scale_range=(0.5, 0.5), color_jitter=0, ignore_index=7), (16, 16)
    )
    _, mask = augment_pair(augment, image, labels, seed=0)
    assert set(mask.unique().tolist()) == {1, 7}


def test_best_checkpoint_is_the_best_epoch_and_crops_pad_with_the_ignore_label(tmp_path, monkeypatch):
    """Scripted val mIoU 0.3, 0.5, 0.4: best.pt must be epoch 2 (neither the first nor the last)."""
    data = tmp_path / "data"
    data.mkdir()
    write_tiny_coco(data, num_train=2, num_val=1)  # one batch per epoch: three cheap epochs
    scripted = iter([0.3, 0.5, 0.4])
    real_evaluate, real_loss = trainer.evaluate, engine.segmentation_loss
    seen_labels: set[int] = set()

    def scripted_evaluate(*args, **kwargs):
        result = real_evaluate(*args, **kwargs)
        return dataclasses.replace(result, scores=dataclasses.replace(result.scores, miou=next(scripted)))

    def spy_loss(outputs, labels, spec):
        seen_labels.update(labels.unique().tolist())
        return real_loss(outputs, labels, spec)

    monkeypatch.setattr(trainer, "evaluate", scripted_evaluate)
    monkeypatch.setattr(engine, "segmentation_loss", spy_loss)
    settings = TrainSettings(
        data=data,
        size=32,
        epochs=3,
        batch_size=2,
        ignore_index=200,
        scale_range=(0.5, 0.6),
        name="best",
        runs_dir=tmp_path / "runs",
        progress=False,
    )
    result = trainer.train(settings)
    assert 200 in seen_labels and 255 not in seen_labels, "crop padding is the run's --ignore-index"
    rows = _rows(result.run_dir)
    assert [float(r["val_miou"]) for r in rows] == [0.3, 0.5, 0.4]
    best, last = load_checkpoint(result.run_dir / "best.pt"), load_checkpoint(result.run_dir / "last.pt")
    assert (result.best_epoch, result.best_miou) == (2, 0.5)
    assert best["epoch"] == 2 and best["metrics"]["val_miou"] == 0.5
    assert all(float(rows[1][key]) == value for key, value in best["metrics"].items()), "best.pt has row 2's metrics"
    assert last["epoch"] == 3 and last["best_epoch"] == 2 and last["best_miou"] == 0.5
    pairs = zip(best["state_dict"].values(), last["state_dict"].values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs), "best.pt holds epoch 2's weights, not the last epoch's"


def test_full_disk_during_resume_is_one_line_keeps_last_pt_and_stale_temps_go(tiny_run, tmp_path, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    payload = torch.load(run / "last.pt", weights_only=True)
    payload["settings"]["epochs"] = 2  # one more epoch to go
    torch.save(payload, run / "last.pt")
    before = _sha(run / "last.pt")
    stale = [run / ".last.pt.k3j2x9.tseg-tmp", run / "plots" / ".miou.png.a1b2.tseg-tmp"]
    for path in stale:
        path.write_bytes(b"half a file from a killed run")
    (run / ".keep").write_text("not tseg's")
    real_save = torch.save

    def full_disk(obj, target, *args, **kwargs):
        # What torch.save does on a full disk: through a Python file object the write raises
        # OSError(ENOSPC); given a path, its C++ writer raises an opaque RuntimeError.
        if isinstance(target, (str, os.PathLike)):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")
        target.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    result = CliRunner().invoke(train_cli, ["--resume", str(run), "-q"])
    assert result.exit_code == 1, result.output
    assert (
        result.stderr.strip() == f"Error: no space left on the device to write {run / 'last.pt'} (nothing was replaced)"
    )
    assert "Traceback" not in result.output
    assert _sha(run / "last.pt") == before, "last.pt is the previous epoch's, byte for byte"
    assert not any(p.exists() for p in stale), "temp files of a killed write are cleaned up on resume"
    assert not list(run.rglob("*.tseg-tmp")), "the failed write left no temp file"
    assert (run / ".keep").is_file(), "only tseg's temp files are removed"
    assert len(_rows(run)) == 1
    monkeypatch.setattr(torch, "save", real_save)
    again = CliRunner().invoke(train_cli, ["--resume", str(run), "-q"])
    assert again.exit_code == 0, again.output
    assert len(_rows(run)) == 2 and load_checkpoint(run / "last.pt")["epoch"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p["settings"].update(lr=float("nan")), "has invalid saved settings: lr must be a finite number"),
        (lambda p: p.update(step="3"), "malformed 'step' entry"),
        (lambda p: p.pop("log"), "malformed 'log' entry"),
        (lambda p: p["optimizer"]["param_groups"][0]["params"].pop(), "holds training state that does not fit"),
        (lambda p: p["state_dict"].pop(next(iter(p["state_dict"]))), "does not fit the run's model: missing 1"),
    ],
)
def test_resume_of_a_damaged_last_pt_is_one_line(tiny_run, tmp_path, change, message):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    payload = torch.load(run / "last.pt", weights_only=True)
    payload["settings"]["epochs"] = 2
    change(payload)
    torch.save(payload, run / "last.pt")
    result = CliRunner().invoke(train_cli, ["--resume", str(run), "-q"])
    assert result.exit_code == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.output
    assert len(_rows(run)) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_explicit_cuda_without_a_gpu_fails_instead_of_falling_back(tiny_coco_dir, tmp_path):
    args = ["--data", str(tiny_coco_dir), "--size", "32", "--batch-size", "2", "--device", "cuda"]
    result = CliRunner().invoke(train_cli, [*args, "--runs-dir", str(tmp_path), "-q"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: device 'cuda' requested but PyTorch sees no CUDA GPU"
    assert not list(tmp_path.iterdir()), "no run folder"


def test_synthetic_dataset_files_respect_the_umask(tmp_path):
    from tseg.train.data.synthetic import generate_synthetic_dataset

    old = os.umask(0o027)
    try:
        root = generate_synthetic_dataset(
            tmp_path / "syn", num_train=2, num_val=1, num_test=1, image_size=32, progress=False
        )
    finally:
        os.umask(old)
    paths = [root, *root.rglob("*")]
    assert len(paths) > 8
    for path in paths:
        want = 0o750 if path.is_dir() else 0o640
        assert path.stat().st_mode & 0o777 == want, (path, oct(path.stat().st_mode))


def test_max_image_pixels_limits_the_datasets_images_for_the_run_only(tmp_path):
    from tseg.runtime import pixel_limit

    data = tmp_path / "data"
    data.mkdir()
    write_tiny_coco(data, num_train=2, num_val=1)  # the largest image is 64 x 64 = 4096 pixels
    env_before, limit_before = os.environ.get(pixel_limit.MAX_IMAGE_PIXELS_ENV), pixel_limit.max_image_pixels()
    args = ["--data", str(data), "--size", "32", "--epochs", "1", "--batch-size", "2", "--runs-dir", str(tmp_path)]
    result = CliRunner().invoke(train_cli, [*args, "--name", "small", "--max-image-pixels", "1000", "-q"])
    assert result.exit_code == 1, result.output
    assert "is over the limit of 1000" in result.stderr and "--max-image-pixels" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert os.environ.get(pixel_limit.MAX_IMAGE_PIXELS_ENV) == env_before
    assert pixel_limit.max_image_pixels() == limit_before
    bad = CliRunner().invoke(train_cli, [*args, "--name", "bad", "--max-image-pixels", "2e8", "-q"])
    assert bad.exit_code == 1 and "--max-image-pixels: need a positive number" in bad.stderr
    assert not (tmp_path / "bad").exists(), "a bad limit fails before the run folder is made"
