import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.notes import without_auto_note
from tests.onnx_models import COLOUR_CLASSES, colour_blocks_image, colour_labels, write_colour_model
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.images import read_image
from tseg.runtime.infer.cli import main as infer_cli


def assert_colour_labels(png: Path, image: np.ndarray) -> None:
    """The PNG holds exactly the colour model's labels for ``image`` (ties aside)."""
    expected, decided = colour_labels(image)
    labels = read_label_png(png)
    assert labels.shape == image.shape[:2], png
    assert decided.mean() > 0.99, "too many ties for the check to mean anything"
    mismatched = int((labels != expected)[decided].sum())
    assert mismatched == 0, f"{png}: {mismatched} of {int(decided.sum())} pixels differ from the colour model"


def run_infer(*args) -> str:
    result = CliRunner().invoke(infer_cli, [*map(str, args), "-q"])
    assert result.exit_code == 0, result.output
    return result.output


def test_infer_folder_writes_the_models_labels(colour_onnx, photo_dir, tmp_path):
    out = tmp_path / "out"
    output = run_infer(photo_dir, "--model", colour_onnx, "--out", out)
    assert "wrote 3 label map(s)" in output
    for name in ("a.png", "b.png", "sub/c.png"):
        image = read_image(photo_dir / name)
        assert len(np.unique(colour_labels(image)[0])) == len(COLOUR_CLASSES), "every class should be in view"
        assert_colour_labels(out / name, image)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["a.png", "b.png", "sub/c.png"]


def test_the_label_check_fails_for_an_all_background_model(photo_dir, tmp_path):
    """The check above is not satisfied by shapes alone: a model that predicts background fails it."""
    stub = write_colour_model(tmp_path / "stub.onnx", all_background=True)
    run_infer(photo_dir / "a.png", "--model", stub, "--out", tmp_path / "out")
    assert not read_label_png(tmp_path / "out" / "a.png").any()
    with pytest.raises(AssertionError, match="pixels differ from the colour model"):
        assert_colour_labels(tmp_path / "out" / "a.png", read_image(photo_dir / "a.png"))


def test_infer_coco_eval_is_the_confusion_matrix_of_the_written_labels(colour_onnx, tiny_coco_dir, tmp_path):
    output = run_infer("--coco", tiny_coco_dir / "val.json", "--model", colour_onnx, "--out", tmp_path, "--eval")
    coco = CocoDataset(tiny_coco_dir / "val.json")
    matrix = ConfusionMatrix(len(COLOUR_CLASSES))
    for index, info in enumerate(coco.images):
        image = coco.read_image(index)
        png = tmp_path / Path(info.file_name).with_suffix(".png")
        assert_colour_labels(png, image)
        matrix.update(coco.label_map(index), read_label_png(png))
    expected = matrix.compute()
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["miou"] == pytest.approx(expected.miou, abs=1e-12)
    assert report["pixel_accuracy"] == pytest.approx(expected.pixel_accuracy, abs=1e-12)
    assert list(report["iou"]) == list(COLOUR_CLASSES)
    assert list(report["iou"].values()) == pytest.approx(list(expected.iou), abs=1e-12)
    # The colour model finds the tiny dataset's objects in its colour images (not in the grey one).
    assert 0.5 < report["miou"] < 1.0
    assert f"mIoU {expected.miou:.4f}" in output


def test_infer_folder_writes_pngs_at_image_size(tiny_onnx, tiny_coco_dir, tmp_path):
    result = CliRunner().invoke(
        infer_cli,
        [
            str(tiny_coco_dir / "gray"),
            str(tiny_coco_dir / "rgb" / "000.jpg"),
            "--model",
            str(tiny_onnx),
            "--out",
            str(tmp_path),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_label_png(tmp_path / "001.png").shape == (48, 80)
    assert read_label_png(tmp_path / "000.png").shape == (72, 56)


def test_infer_coco_eval_matches_training_time_miou(tiny_run, tiny_onnx, tiny_coco_dir, tmp_path):
    result = CliRunner().invoke(
        infer_cli,
        [
            "--coco",
            str(tiny_coco_dir / "val.json"),
            "--model",
            str(tiny_onnx),
            "--out",
            str(tmp_path),
            "--eval",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    coco = CocoDataset(tiny_coco_dir / "val.json")
    for index, image in enumerate(coco.images):
        labels = read_label_png(tmp_path / Path(image.file_name).with_suffix(".png"))
        assert labels.shape == (image.height, image.width)
        # Every image shows all four classes; even the one-epoch model tells some apart
        # (the exact labels are checked with the hand-made colour model above).
        assert len(np.unique(coco.label_map(index))) == 4
        assert len(np.unique(labels)) >= 2, f"{image.file_name}: one label everywhere"
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["miou"] == pytest.approx(tiny_run.best_miou, abs=0.005)
    assert f"mIoU {report['miou']:.4f}" in result.output


def write_rotated_jpeg(path: Path) -> np.ndarray:
    """A JPEG stored 30 x 50 with EXIF orientation 6 (show rotated 90 degrees clockwise).

    Returns:
        The stored pixels as decoded, (30, 50, 3) uint8.
    """
    stored = np.full((30, 50, 3), 20, np.uint8)
    stored[8:, :16] = (230, 30, 30)
    stored[8:, 16:34] = (30, 220, 40)
    stored[8:, 34:] = (40, 50, 240)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return read_image(path)


def test_infer_applies_exif_orientation_to_photos_but_not_to_coco_images(colour_onnx, tmp_path):
    (tmp_path / "in").mkdir()
    photo = tmp_path / "in" / "photo.jpg"
    stored = write_rotated_jpeg(photo)
    shown = np.rot90(stored, k=-1)  # orientation 6: the top row of the stored pixels becomes the right column
    run_infer(photo, "--model", colour_onnx, "--out", tmp_path / "photos")
    assert read_label_png(tmp_path / "photos" / "photo.png").shape == (50, 30)
    assert_colour_labels(tmp_path / "photos" / "photo.png", np.ascontiguousarray(shown))

    # COCO annotations refer to the stored pixels: the same file in a split is not rotated.
    categories = [{"id": i, "name": name} for i, name in enumerate(COLOUR_CLASSES[1:], start=1)]
    split = {"images": [{"id": 1, "file_name": "photo.jpg", "height": 30, "width": 50}], "categories": categories}
    (tmp_path / "in" / "split.json").write_text(json.dumps(split))
    run_infer("--coco", tmp_path / "in" / "split.json", "--model", colour_onnx, "--out", tmp_path / "coco")
    assert read_label_png(tmp_path / "coco" / "photo.png").shape == (30, 50)
    assert_colour_labels(tmp_path / "coco" / "photo.png", stored)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{json}"], "is not an ONNX model"),
        (["--model", "{data}/missing.onnx"], "model file not found"),
        (["--model", "{onnx}", "--eval"], "--eval and --data need --coco"),
        (["--model", "{onnx}", "--coco", "{data}/none.json"], "give either PATHS or --coco"),
    ],
)
def test_infer_bad_input_is_one_line(tiny_onnx, tiny_coco_dir, tmp_path, args, message):
    values = {"json": str(tiny_coco_dir / "train.json"), "data": str(tiny_coco_dir), "onnx": str(tiny_onnx)}
    args = [a.format(**values) for a in args]
    result = CliRunner().invoke(infer_cli, [str(tiny_coco_dir / "rgb"), *args, "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.startswith("Error")]) == 1


def test_infer_never_imports_torch(tiny_onnx, tiny_coco_dir, tmp_path):
    args = [str(tiny_coco_dir / "rgb"), "--model", str(tiny_onnx), "--out", str(tmp_path), "-q"]
    code = (
        "import sys\n"
        "from tseg.runtime.infer.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
    assert (tmp_path / "000.png").is_file()


# ----------------------------------------------------------------------------- a big job with bad files


def photo_folder_with_two_bad(root: Path) -> Path:
    """6 files: 4 readable images of odd sizes (one in a subfolder), a text file and a truncated JPEG."""
    rng = np.random.default_rng(3)
    (root / "sub").mkdir(parents=True)
    for name, (height, width) in {"a.png": (37, 53), "c.jpg": (40, 40), "e.png": (20, 70), "sub/f.png": (9, 9)}.items():
        Image.fromarray(colour_blocks_image(rng, height, width)).save(root / name, quality=95)
    (root / "b.png").write_text("not a PNG")
    (root / "sub" / "d.jpg").write_bytes((root / "c.jpg").read_bytes()[:200])
    return root


@pytest.mark.parametrize("pipeline", [[], ["--workers", "0", "--batch-size", "1"], ["--batch-size", "3"]])
def test_a_folder_with_two_bad_images_writes_the_four_others_and_exits_1(colour_onnx, tmp_path, pipeline):
    photos = photo_folder_with_two_bad(tmp_path / "photos")
    out = tmp_path / "out"
    args = [str(photos), "--model", str(colour_onnx), "--out", str(out), "-q", *pipeline]
    result = CliRunner().invoke(infer_cli, args)
    assert result.exit_code == 1 and result.stdout == ""
    lines = without_auto_note(result)
    assert lines[0].startswith(f"failed: {photos / 'b.png'}: cannot read image: cannot identify image file")
    assert lines[1].startswith(f"failed: {photos / 'sub' / 'd.jpg'}: cannot read image")
    assert lines[2:] == [f"Error: 4 written, 2 failed (listed in {out / 'errors.txt'})"]
    assert (out / "errors.txt").read_text().splitlines()[1:] == lines[:2]
    for name in ("a.png", "c.png", "e.png", "sub/f.png"):
        source = photos / name.replace("c.png", "c.jpg")
        assert_colour_labels(out / name, read_image(source))
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.*")) == [
        "a.png", "c.png", "e.png", "errors.txt", "sub/f.png"
    ]


def test_fail_fast_stops_at_the_first_bad_image_in_input_order(colour_onnx, tmp_path):
    photos = photo_folder_with_two_bad(tmp_path / "photos")
    out = tmp_path / "out"
    result = CliRunner().invoke(infer_cli, [str(photos), "-m", str(colour_onnx), "-o", str(out), "-q", "--fail-fast"])
    assert result.exit_code == 1
    assert without_auto_note(result)[1:] == [
        f"Error: stopped at the first failure (--fail-fast): 1 written, 1 failed (listed in {out / 'errors.txt'})"
    ]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "errors.txt"]


def test_a_clean_rerun_removes_the_earlier_errors_txt_but_not_a_users_file(colour_onnx, tmp_path):
    photos = photo_folder_with_two_bad(tmp_path / "photos")
    out = tmp_path / "out"
    CliRunner().invoke(infer_cli, [str(photos), "-m", str(colour_onnx), "-o", str(out), "-q"])
    assert (out / "errors.txt").is_file()
    (photos / "b.png").unlink()
    (photos / "sub" / "d.jpg").unlink()
    run_infer(photos, "-m", colour_onnx, "-o", out)
    assert not (out / "errors.txt").exists()
    (out / "errors.txt").write_text("my notes\n")
    run_infer(photos, "-m", colour_onnx, "-o", out)
    assert (out / "errors.txt").read_text() == "my notes\n"
    (out / "errors.txt").unlink()
    (out / "errors.txt").mkdir()
    result = CliRunner().invoke(infer_cli, [str(photos), "-m", str(colour_onnx), "-o", str(out), "-q"])
    assert result.exit_code == 1 and "errors.txt exists and is a folder, not a file tseg wrote" in result.stderr


def test_workers_and_batch_size_do_not_change_a_byte(colour_onnx, photo_dir, tmp_path):
    outputs = []
    for index, args in enumerate([["--workers", "0", "--batch-size", "1"], ["--workers", "3", "--batch-size", "2"]]):
        out = tmp_path / f"out{index}"
        run_infer(photo_dir, "--model", colour_onnx, "--out", out, *args)
        outputs.append({p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*.png"))})
    assert outputs[0] == outputs[1] and len(outputs[0]) == 3


# ----------------------------------------------------------------------------- defaults: no --model, no --out


def test_without_model_the_newest_exported_model_under_runs_is_used(colour_onnx, photo_dir, tmp_path, monkeypatch):
    import os
    import shutil

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(infer_cli, [str(photo_dir), "--out", "labels", "-q"])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: no model given and no exported model under runs/")
    assert "pass --model FILE.onnx" in result.stderr and "tseg-export" in result.stderr
    assert not (tmp_path / "labels").exists()

    older, newer = tmp_path / "runs" / "a" / "best.onnx", tmp_path / "runs" / "b" / "best.onnx"
    for path, when in ((older, 1_000_000), (newer, 2_000_000)):
        path.parent.mkdir(parents=True)
        shutil.copyfile(colour_onnx, path)
        os.utime(path, (when, when))
    rejected = tmp_path / "runs" / "b" / "best.rejected.onnx"
    foreign = tmp_path / "runs" / "c" / "other.onnx"
    shutil.copyfile(colour_onnx, rejected)
    foreign.parent.mkdir()
    foreign.write_bytes(b"an ONNX file without tseg metadata")
    result = CliRunner().invoke(infer_cli, [str(photo_dir), "--out", "labels", "-q"])
    assert result.exit_code == 0, result.output
    assert without_auto_note(result) == [f"using the newest model under runs/: {Path('runs/b/best.onnx')}"]
    assert (tmp_path / "labels" / "a.png").is_file()

    sibling = tmp_path / "runs" / "b" / "best.int8.onnx"  # tseg-export --precision writes it after best.onnx
    shutil.copyfile(colour_onnx, sibling)
    os.utime(sibling, (3_000_000, 3_000_000))
    result = CliRunner().invoke(infer_cli, [str(photo_dir), "--out", "labels2", "-q"])
    assert without_auto_note(result) == [f"using the newest model under runs/: {Path('runs/b/best.onnx')}"]
    sibling.rename(tmp_path / "runs" / "a" / "best.int8.onnx")  # the FP32 of its own export, not the newest FP32
    result = CliRunner().invoke(infer_cli, [str(photo_dir), "--out", "labels3", "-q"])
    assert without_auto_note(result) == [f"using the newest model under runs/: {Path('runs/a/best.onnx')}"]


def test_without_out_a_new_runs_infer_folder_is_made_each_time(colour_onnx, photo_dir, tiny_coco_dir, tmp_path,
                                                              monkeypatch):
    monkeypatch.chdir(tmp_path)
    name = photo_dir.name  # pytest numbers the fixture's folders: photos0, photos1 ...
    for expected in (name, f"{name}-2"):
        result = CliRunner().invoke(infer_cli, [str(photo_dir), "--model", str(colour_onnx), "-q"])
        assert result.exit_code == 0, result.output
        assert without_auto_note(result) == [f"writing to {Path('runs/infer') / expected}"]
        assert (tmp_path / "runs" / "infer" / expected / "sub" / "c.png").is_file()
    result = CliRunner().invoke(infer_cli, ["--coco", str(tiny_coco_dir / "val.json"), "-m", str(colour_onnx), "-q"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "infer" / "coco-val").is_dir()
    # A run refused before any work leaves no empty folder behind.
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"")
    (tmp_path / "bad" / "x.png").write_bytes(b"")
    result = CliRunner().invoke(infer_cli, [str(tmp_path / "bad"), "-m", str(colour_onnx), "-q"])
    assert result.exit_code == 1 and "would both be written to" in result.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "infer").iterdir()) == ["coco-val", name, f"{name}-2"]
