import csv
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint
from tseg.train.cli import main as train_cli
from tseg.train.models import get_model, list_models, register_model
from tseg.train.trainer import create_run_dir


def test_tiny_run_writes_checkpoints_metrics_and_settings(tiny_run):
    run = tiny_run.run_dir
    for name in ("best.pt", "last.pt", "metrics.csv", "settings.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 1
    assert {"epoch", "train_loss", "val_loss", "val_miou", "iou/Glass"} <= set(rows[0])
    # One epoch: best.pt is that epoch, with its metrics row and the same weights as last.pt
    # (which best.pt is chosen over several epochs: test_run_hardening.py's scripted mIoU run).
    best, last = load_checkpoint(run / "best.pt"), load_checkpoint(run / "last.pt")
    assert best["epoch"] == last["epoch"] == tiny_run.best_epoch == 1
    assert all(float(rows[0][key]) == value for key, value in best["metrics"].items())
    assert all(torch.equal(a, b) for a, b in zip(best["state_dict"].values(), last["state_dict"].values(), strict=True))
    settings = json.loads((run / "settings.json").read_text())
    assert settings["size"] == 32 and settings["tseg_version"]
    payload = load_checkpoint(run / "best.pt")
    assert payload["model"]["classes"] == ["Background", "Metal", "Paper", "Glass"]
    assert payload["model"]["input_size"] == [32, 32]
    model, spec = model_from_checkpoint(payload)
    assert spec.mean == pytest.approx((0.485, 0.456, 0.406))
    assert model(torch.zeros(1, 3, 40, 24))["out"].shape == (1, 4, 40, 24)


def test_run_dirs_are_never_overwritten(tmp_path):
    first = create_run_dir(tmp_path, "exp")
    second = create_run_dir(tmp_path, "exp")
    assert (first.name, second.name) == ("exp", "exp-2")
    with pytest.raises(TsegError, match="plain folder name"):
        create_run_dir(tmp_path, "../x")


def test_registry_rejects_duplicates_and_unknown_names():
    assert "deeplabv3_mobilenet_v3_large" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model("deeplabv3_mobilenet_v3_large")(lambda **kw: None)
    with pytest.raises(TsegError, match="unknown model 'nope'; valid: .*deeplabv3_mobilenet_v3_large"):
        get_model("nope", num_classes=3)


def _run_cli(args):
    result = CliRunner().invoke(train_cli, args)
    return result.exit_code, result.output


def test_cli_trains_on_a_dataset_it_did_not_generate(tiny_coco_dir, tmp_path):
    code, out = _run_cli(
        [
            "--data",
            str(tiny_coco_dir),
            "--size",
            "32",
            "--epochs",
            "1",
            "--batch-size",
            "3",
            "--name",
            "cli",
            "--runs-dir",
            str(tmp_path),
            "-q",
        ]
    )
    assert code == 0, out
    assert "val mIoU" in out and (tmp_path / "cli" / "best.pt").is_file()


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        (None, ["--data", "/no/such/folder"], "data folder not found: /no/such/folder"),
        ("no_images", [], "has no images"),
        ("bad_image", [], "cannot read image"),
        (None, ["--model", "nope"], "unknown model 'nope'"),
        (None, ["--batch-size", "99"], "batch size 99 exceeds the 6 training images"),
    ],
)
def test_cli_bad_input_is_one_line(tiny_coco_dir, tmp_path, setup, args, message):
    data = tmp_path / "data"
    shutil.copytree(tiny_coco_dir, data)
    if setup == "no_images":
        (data / "train.json").write_text(json.dumps({"images": [], "categories": []}))
    elif setup == "bad_image":
        (data / "rgb" / "000.jpg").write_bytes(b"broken")
    base = [
        "--data",
        str(data),
        "--size",
        "32",
        "--epochs",
        "1",
        "--batch-size",
        "2",
        "--runs-dir",
        str(tmp_path / "runs"),
        "-q",
    ]
    code, out = _run_cli(base + args)
    assert code == 1
    lines = [line for line in out.strip().splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and message in lines[0], out
    assert "Traceback" not in out
