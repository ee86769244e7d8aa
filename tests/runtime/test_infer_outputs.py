"""tseg-infer's other outputs: --overlay pictures, the competition's --submission CSV, --score-submission."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.notes import without_auto_note
from tests.runtime.test_infer import run_infer
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.images import read_image
from tseg.runtime.infer.cli import main as infer_cli


def test_overlay_writes_one_picture_per_image_beside_the_label_maps(colour_onnx, photo_dir, tmp_path):
    run_infer(photo_dir, "--model", colour_onnx, "--out", tmp_path / "out", "--overlay", tmp_path / "pictures")
    pictures = sorted(p.relative_to(tmp_path / "pictures").as_posix() for p in (tmp_path / "pictures").rglob("*"))
    assert pictures == ["a.jpg", "b.jpg", "sub", "sub/c.jpg"]
    with Image.open(tmp_path / "pictures" / "sub" / "c.jpg") as picture:
        assert picture.width == 120 and picture.height > 90 and picture.mode == "RGB"  # the legend below
        shown = np.asarray(picture, np.int16)[:90]
    assert np.abs(shown - read_image(photo_dir / "sub" / "c.png")).mean() > 5  # the labels were blended in
    result = CliRunner().invoke(infer_cli, [str(photo_dir), "-m", str(colour_onnx), "-o", str(tmp_path / "o2"),
                                            "--overlay", str(photo_dir / "pictures"), "-q"])
    assert result.exit_code == 1 and "--overlay" in result.stderr and "lies in the input folder" in result.stderr


def test_submission_rows_are_the_label_maps_at_256(colour_onnx, tiny_coco_dir, tmp_path):
    from tseg.runtime.data.submission import read_submission
    from tseg.runtime.images import resize_labels

    csv = tmp_path / "sub.csv"
    output = run_infer("--coco", tiny_coco_dir / "val.json", "-m", colour_onnx, "-o", tmp_path / "out",
                       "--submission", csv)
    assert f"wrote the submission {csv}" in output
    coco = CocoDataset(tiny_coco_dir / "val.json")
    rows = list(read_submission(csv))
    assert [name for name, _ in rows] == [im.file_name for im in coco.images]
    for (name, labels), info in zip(rows, coco.images, strict=True):
        png = read_label_png(tmp_path / "out" / Path(info.file_name).with_suffix(".png"))
        assert np.array_equal(labels, resize_labels(png, (256, 256))), name


def test_no_submission_is_kept_when_an_image_failed(colour_onnx, tiny_coco_dir, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_coco_dir, root)
    first = CocoDataset(root / "val.json").images[0].file_name
    (root / first).write_bytes(b"broken")
    csv = tmp_path / "sub.csv"
    result = CliRunner().invoke(infer_cli, ["--coco", str(root / "val.json"), "-m", str(colour_onnx),
                                            "-o", str(tmp_path / "out"), "--submission", str(csv), "-q", "--eval"])
    assert result.exit_code == 1 and result.stdout == ""
    assert without_auto_note(result)[0].startswith(f"failed: {root / first}: cannot read image")
    assert not csv.exists() and not list(tmp_path.glob("*.tseg-tmp"))
    assert not (tmp_path / "out" / "eval.json").exists()


def test_score_submission_scores_a_csv_against_the_json_without_a_model(colour_onnx, tiny_coco_dir, tmp_path):
    from tseg.runtime.data.submission import read_submission
    from tseg.runtime.images import resize_labels

    csv = tmp_path / "sub.csv"
    val = tiny_coco_dir / "val.json"
    run_infer("--coco", val, "-m", colour_onnx, "-o", tmp_path / "out", "--submission", csv)
    output = run_infer("--coco", val, "--score-submission", csv)
    coco = CocoDataset(val)
    matrix = ConfusionMatrix(coco.num_classes)
    for (_, labels), index in zip(read_submission(csv), range(len(coco)), strict=True):
        matrix.update(resize_labels(coco.label_map(index), (256, 256)), labels)
    assert output.startswith(f"{csv}: mIoU {matrix.compute().miou:.4f}")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "m.onnx"], "--model does not apply to --score-submission"),
        (["--crf"], "--crf does not apply to --score-submission"),
        ([], "--score-submission needs --coco"),
    ],
)
def test_score_submission_refuses_what_it_would_ignore(tmp_path, tiny_coco_dir, extra, message):
    coco = [] if not extra else ["--coco", str(tiny_coco_dir / "val.json")]
    result = CliRunner().invoke(infer_cli, [*coco, "--score-submission", str(tmp_path / "s.csv"), *extra])
    assert result.exit_code == 1 and message in result.stderr and len(result.stderr.splitlines()) == 1
