"""Every training setting is checked when TrainSettings is made: one line naming the option."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from tseg.runtime.errors import TsegError
from tseg.train.cli import main as train_cli
from tseg.train.data.transforms import sample_seed
from tseg.train.settings import MAX_SEED, TrainSettings

NAN, INF = math.nan, math.inf


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lr": NAN}, "lr must be a finite number > 0, got nan"),
        ({"lr": INF}, "lr must be a finite number > 0, got inf"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"lr": 0.0}, "lr must be a finite number > 0"),
        ({"lr": "0.1"}, "lr must be a finite number > 0, got '0.1'"),
        ({"min_lr": -1.0, "lr_schedule": "warmup-cosine"}, "min_lr must be a number from 0 to lr="),
        ({"min_lr": NAN, "lr_schedule": "warmup-cosine"}, "min_lr must be a number from 0 to lr="),
        ({"min_lr": 0.1, "lr": 0.01, "lr_schedule": "warmup-cosine"}, "min_lr must be a number from 0 to lr="),
        ({"weight_decay": NAN}, "weight_decay must be a finite number >= 0, got nan"),
        ({"weight_decay": -0.1}, "weight_decay must be a finite number >= 0"),
        ({"momentum": -0.5, "optimizer": "sgd"}, "momentum must be a finite number in [0, 1)"),
        ({"momentum": 1.0, "optimizer": "sgd"}, "momentum must be a finite number in [0, 1)"),
        ({"warmup_epochs": NAN}, "warmup_epochs must be a finite number >= 0, got nan"),
        ({"warmup_epochs": -1.0}, "warmup_epochs must be a finite number >= 0"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0, got -1"),
        ({"color_jitter": INF}, "color_jitter must be a finite number in [0, 1], got inf"),
        ({"color_jitter": -0.1}, "color_jitter must be a finite number in [0, 1]"),
        ({"bn_momentum": NAN}, "bn_momentum must be a finite number in (0, 1], got nan"),
        ({"bn_momentum": 0.0}, "bn_momentum must be a finite number in (0, 1]"),
        ({"scale_range": (NAN, 2.0)}, "scale_range needs MIN MAX with 0 < MIN <= MAX <= 4"),
        ({"scale_range": (2.0, 1.0)}, "scale_range needs MIN MAX with 0 < MIN <= MAX <= 4"),
        ({"scale_range": (0.0, 1.0)}, "scale_range needs MIN MAX"),
        ({"scale_range": (0.5, INF)}, "scale_range needs MIN MAX"),
        ({"scale_range": (0.5, 100.0)}, "scale_range needs MIN MAX"),
        ({"epochs": 0}, "epochs must be an integer >= 1, got 0"),
        ({"epochs": 2.5}, "epochs must be an integer >= 1, got 2.5"),
        ({"epochs": True}, "epochs must be an integer >= 1, got True"),
        ({"batch_size": -1}, "batch_size must be an integer >= 1, got -1"),
        ({"accumulate": 0}, "accumulate must be an integer >= 1, got 0"),
        ({"size": 0}, "size must be an integer 16..4096, got 0"),
        ({"size": 15}, "size must be an integer 16..4096"),
        ({"size": 100_000}, "size must be an integer 16..4096, got 100000"),
        ({"ignore_index": 300}, "ignore_index must be an integer 0..255, got 300"),
        ({"ignore_index": -1}, "ignore_index must be an integer 0..255, got -1"),
        ({"seed": -1}, "seed must be an integer 0..4294967295, got -1"),
        ({"seed": MAX_SEED + 1}, "seed must be an integer 0..4294967295"),
        ({"workers": -1}, "workers must be an integer 0..64, got -1"),
        ({"workers": 100_000}, "workers must be an integer 0..64"),
        ({"class_weights": "1,nan,1,1"}, "class_weights needs 'none', 'balanced' or one finite number >= 0"),
        ({"class_weights": "1,inf,1,1"}, "class_weights needs"),
        ({"class_weights": "1,-1,1,1"}, "class_weights needs"),
        ({"class_weights": "0,0,0,0"}, "not all 0"),
        ({"class_weights": "a,b"}, "class_weights needs"),
        ({"class_weights": ""}, "class_weights needs"),
        ({"warmup_steps": 3, "warmup_epochs": 1.0}, "give warmup_steps=3 or warmup_epochs=1, not both"),
        ({"min_lr": 1e-5}, "min_lr=1e-05 has no effect with the constant LR schedule"),
        ({"optimizer": "rmsprop"}, "optimizer: unknown optimizer 'rmsprop'; valid: adam, adamw, sgd"),
        ({"lr_schedule": "linear"}, "lr_schedule: unknown LR schedule 'linear'; valid: constant"),
        ({"device": "tpu"}, "device: unknown device 'tpu'; valid: auto, cpu, cuda"),
        ({"amp": 1}, "amp must be True or False, got 1"),
        ({"name": ""}, "name must be a non-empty string"),
        ({"name": "a\x00b"}, "without NUL characters"),
        ({"name": "../x"}, "name: the run name must be a plain folder name"),
        ({"train_json": None}, "train_json must be a non-empty string"),
        ({"runs_dir": "runs"}, "runs_dir must be a Path"),
    ],
)
def test_bad_settings_raise_one_clear_error(fields, message):
    with pytest.raises(TsegError) as info:
        TrainSettings(**fields)
    text = str(info.value)
    assert message in text and "\n" not in text and "--" not in text  # Python parameters, not the CLI's flags


def test_boundary_settings_are_accepted():
    settings = TrainSettings(
        size=16,
        lr=1e-9,
        min_lr=1e-9,
        lr_schedule="warmup-poly",
        warmup_epochs=0.5,
        momentum=0.0,
        optimizer="sgd",
        color_jitter=1.0,
        bn_momentum=1.0,
        scale_range=(4.0, 4.0),
        ignore_index=0,
        seed=MAX_SEED,
        workers=0,
        class_weights="0,1.5,2,0",
    )
    assert TrainSettings.from_dict(settings.to_dict()) == settings


def test_sample_seeds_stay_in_torch_range_for_every_valid_seed():
    import torch

    big = sample_seed(MAX_SEED, 10_000, 10**9)
    assert 0 <= big < 2**64
    torch.manual_seed(big)  # raises "Overflow" if the seed leaves torch's range
    assert sample_seed(3, 2, 1) == (3 * 1_000_003 + 2) * 1_000_033 + 1, "small seeds keep their streams"


def _cli(args, runs_dir):
    return CliRunner().invoke(train_cli, [*args, "--runs-dir", str(runs_dir), "-q"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
        (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--min-lr", "-1", "--lr-schedule", "warmup-cosine"], "--min-lr must be a number from 0 to --lr 0.001"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number >= 0"),
        (["--momentum", "-0.5", "--optimizer", "sgd"], "--momentum must be a finite number in [0, 1)"),
        (["--momentum", "0.5"], "--momentum applies to --optimizer sgd only, not 'adam'"),
        (["--warmup-epochs", "nan"], "--warmup-epochs must be a finite number >= 0"),
        (["--warmup-steps", "2", "--warmup-epochs", "1"], "give --warmup-steps 2 or --warmup-epochs 1, not both"),
        (["--epochs", "0"], "--epochs must be an integer >= 1"),
        (["--batch-size", "-1"], "--batch-size must be an integer >= 1"),
        (["--size", "0"], "--size must be an integer 16..4096"),
        (["--scale-aug", "nan", "2"], "--scale-aug needs MIN MAX"),
        (["--scale-aug", "2", "1"], "--scale-aug needs MIN MAX"),
        (["--color-jitter", "inf"], "--color-jitter must be a finite number in [0, 1]"),
        (["--ignore-index", "300"], "--ignore-index must be an integer 0..255"),
        (["--ignore-index", "-1"], "--ignore-index must be an integer 0..255"),
        (["--class-weights", "1,nan"], "--class-weights needs"),
        (["--bn-momentum", "nan"], "--bn-momentum must be a finite number in (0, 1]"),
        (["--min-lr", "0.0001"], "--min-lr 0.0001 has no effect with the constant LR schedule (--lr-schedule"),
    ],
)
def test_cli_rejects_bad_numbers_before_any_work(tmp_path, args, message):
    runs = tmp_path / "runs"
    result = _cli(["--data", str(tmp_path / "no-data"), *args], runs)
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"Error: {result.stderr.strip()[7:]}" and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert result.stdout == "" and not runs.exists(), "refused before the run folder or any data"


def test_resume_names_the_options_to_drop(tmp_path):
    result = _cli(["--resume", str(tmp_path), "--scale-aug", "0.5", "2", "--lr", "0.1"], tmp_path)
    assert result.exit_code == 1
    assert "drop --lr, --runs-dir, --scale-aug" in result.stderr


def test_cli_ignore_index_must_not_be_a_class_label(tiny_coco_dir, tmp_path):
    args = ["--data", str(tiny_coco_dir), "--size", "32", "--batch-size", "2", "--ignore-index", "2"]
    result = _cli(args, tmp_path / "runs")
    assert result.exit_code == 1
    assert "--ignore-index 2 is the label of class 'Paper'; choose a label from 4 to 255" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("train", ["--epochs", "abc"], "Invalid value for '--epochs': 'abc' is not a valid integer"),
        ("train", ["--lr", "fast"], "Invalid value for '--lr'"),
        ("train", ["--bogus"], "No such option '--bogus'"),
        ("train", ["--scale-aug", "0.5"], "Option '--scale-aug' requires 2 arguments"),
        ("plot", ["runs/x"], "Missing option '--out'"),
        ("export", ["--onnx", "x.pt", "--parity-images", "0"], "Invalid value for '--parity-images'"),
        ("export", ["--onnx", "x.pt", "--min-agreement", "2"], "Invalid value for '--min-agreement'"),
        ("export", ["--onnx", "x.pt", "--opset", "x"], "Invalid value for '--opset'"),
    ],
)
def test_usage_errors_are_one_line_and_exit_1(tmp_path, command, args, message):
    from tseg.export.cli import main as export_cli
    from tseg.train.cli import plot_main

    cli = {"train": train_cli, "plot": plot_main, "export": export_cli}[command]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.stderr.startswith("Error: ") and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""


def _many_categories(source: Path, target: Path, count: int) -> Path:
    """A copy of the tiny dataset whose splits list ``count`` categories (the first ones still used)."""
    shutil.copytree(source, target)
    for split in ("train.json", "val.json"):
        data = json.loads((target / split).read_text())
        extra = [{"id": 1000 + i, "name": f"class_{1000 + i}"} for i in range(count)]
        data["categories"] = (data["categories"] + extra)[:count]
        (target / split).write_text(json.dumps(data))
    return target


@pytest.mark.parametrize("categories", [254, 299])
def test_the_class_limit_holds_from_training_to_the_runtime(tiny_coco_dir, tmp_path, categories):
    """MAX_CLASSES (background included) is one constant: more classes are refused up front, in one line."""
    from tseg.runtime.data.coco import CocoDataset
    from tseg.runtime.model.metadata import MAX_CLASSES

    data = _many_categories(tiny_coco_dir, tmp_path / "coco", categories)
    if categories + 1 > MAX_CLASSES:
        result = _cli(["--data", str(data), "--size", "32", "--batch-size", "2", "--epochs", "1"], tmp_path / "runs")
        assert result.exit_code == 1 and len(result.stderr.strip().splitlines()) == 1, result.output
        assert f"{categories + 1} classes with background): tseg handles at most {MAX_CLASSES} classes" in result.stderr
        assert not (tmp_path / "runs").exists()
        with pytest.raises(TsegError, match=f"at most {MAX_CLASSES} classes"):
            CocoDataset(data / "val.json")  # tseg-infer --eval and --score-submission read it the same way
    else:  # the most classes allowed: train -> export -> tseg-infer --eval, end to end
        from tseg.export.cli import main as export_cli
        from tseg.runtime.infer.cli import main as infer_cli

        assert CocoDataset(data / "val.json").num_classes == MAX_CLASSES
        args = ["--data", str(data), "--size", "32", "--batch-size", "2", "--epochs", "1", "--name", "many"]
        assert _cli(args, tmp_path / "runs").exit_code == 0
        checkpoint = tmp_path / "runs" / "many" / "best.pt"
        exported = CliRunner().invoke(export_cli, ["--onnx", str(checkpoint)])
        assert exported.exit_code == 0, exported.output
        scored = CliRunner().invoke(infer_cli, ["--coco", str(data / "val.json"), "--model",
                                                str(checkpoint.with_suffix(".onnx")), "--out", str(tmp_path / "pred"),
                                                "--eval", "-q"])  # fmt: skip
        assert scored.exit_code == 0 and "mIoU" in scored.stdout, scored.output
