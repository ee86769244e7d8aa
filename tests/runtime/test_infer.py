import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from tseg.runtime.cli import main as infer_cli
from tseg.runtime.coco import CocoDataset
from tseg.runtime.labels import read_label_png


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
    for image in coco.images:
        png = tmp_path / image.file_name.rsplit(".", 1)[0]
        assert read_label_png(png.with_suffix(".png")).shape == (image.height, image.width)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["miou"] == pytest.approx(tiny_run.best_miou, abs=0.005)
    assert "mIoU" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "{json}"], "is not a loadable ONNX model"),
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
        "from tseg.runtime.cli import main\n"
        "try:\n"
        f"    main({args!r})\n"
        "except SystemExit as exit:\n"
        "    assert not exit.code, exit.code\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
    assert (tmp_path / "000.png").is_file()
