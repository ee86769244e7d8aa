"""tseg-infer refuses, in one line and before any work, what would lose or misplace a file.

--out on or inside an input folder or the data root, two inputs that would share a
label PNG, targets that escape --out or would replace something that is not a label
map, and settings that would be silently ignored. Each refusal leaves every input
file as it was and writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.conv_models import conv_model
from tests.notes import without_auto_note
from tests.tiny_coco import CLASSES as COCO_CLASSES
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.errors import TsegError
from tseg.runtime.infer.cli import main
from tseg.runtime.infer.combinations import check_combinations
from tseg.runtime.infer.outputs import plan_targets
from tseg.runtime.segment.refine import CRF_FILE, CrfParams, resolve_crf_params


def checksums(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (symlinks by their target text)."""
    sums = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_symlink():
                sums[str(path)] = "link:" + str(path.readlink())
            elif path.is_file():
                sums[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return sums


def write_image(path: Path, size=(10, 6), colour=(200, 30, 30)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def model(tmp_path) -> Path:
    return conv_model(tmp_path / "model" / "m.onnx", classes=COCO_CLASSES)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    write_image(folder / "a.jpg")
    write_image(folder / "sub" / "b.png", colour=(20, 200, 20))
    return folder


def invoke(*args):
    return CliRunner().invoke(main, [*map(str, args), "-q"])


def assert_one_line_error(result, message: str) -> None:
    """Exit 1, one ``Error:`` line on stderr (never the --device auto note before it)."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert message in lines[0], lines[0]
    assert result.exception is None or isinstance(result.exception, SystemExit)


# ----------------------------------------------------------------------------- --out and the inputs


@pytest.mark.parametrize(
    "out",
    ["{photos}", "{photos}/sub", "{photos}/new/pred"],
    ids=["equal", "inside-existing", "inside-new"],
)
def test_out_on_or_inside_an_input_folder_is_refused(model, photos, tmp_path, out):
    before = checksums(photos, tmp_path / "model")
    result = invoke(photos, "--model", model, "--out", out.format(photos=photos))
    assert_one_line_error(result, "lies in the input folder")
    assert checksums(photos, tmp_path / "model") == before  # nothing replaced, nothing added


def test_out_in_the_folder_of_an_image_given_directly_is_refused(model, photos):
    before = checksums(photos)
    result = invoke(photos / "a.jpg", "--model", model, "--out", photos / "labels")
    assert_one_line_error(result, f"lies in the input folder {photos}")
    assert checksums(photos) == before


@pytest.mark.parametrize("out", ["{root}", "{root}/pred", "{root}/rgb"], ids=["root", "inside", "image-folder"])
def test_out_on_or_inside_the_coco_data_root_is_refused(model, tiny_coco_dir, tmp_path, out):
    root = tmp_path / "coco"
    shutil.copytree(tiny_coco_dir, root)
    before = checksums(root)
    result = invoke("--coco", root / "val.json", "--model", model, "--out", out.format(root=root), "--eval")
    assert_one_line_error(result, "lies in the input folder")
    assert checksums(root) == before


def test_out_inside_an_explicit_data_root_is_refused(model, tiny_coco_dir, tmp_path):
    json_copy = tmp_path / "splits" / "val.json"
    json_copy.parent.mkdir()
    shutil.copy(tiny_coco_dir / "val.json", json_copy)
    result = invoke("--coco", json_copy, "--data", tiny_coco_dir, "--model", model, "--out", tiny_coco_dir / "x")
    assert_one_line_error(result, f"lies in the input folder {tiny_coco_dir}")
    assert not (tiny_coco_dir / "x").exists()


def test_out_that_is_an_existing_file_is_refused(model, photos, tmp_path):
    existing = tmp_path / "notes.txt"
    existing.write_text("keep me")
    result = invoke(photos, "--model", model, "--out", existing)
    assert_one_line_error(result, "is a file: need a folder")
    assert existing.read_text() == "keep me"


def test_a_file_in_the_way_of_a_target_folder_is_refused_before_any_work(model, photos, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").write_text("a file named like the image subfolder")
    result = invoke(photos, "--model", model, "--out", out)
    assert_one_line_error(result, "is a file, not a folder")
    assert sorted(p.name for p in out.iterdir()) == ["sub"]  # a.png was not written either


# ----------------------------------------------------------------------------- targets


def test_two_images_with_one_stem_in_a_folder_are_refused_naming_both(model, tmp_path):
    folder = tmp_path / "pics"
    write_image(folder / "x.jpg")
    write_image(folder / "x.png")
    result = invoke(folder, "--model", model, "--out", tmp_path / "out")
    assert_one_line_error(result, "would both be written to")
    assert str(folder / "x.jpg") in result.stderr and str(folder / "x.png") in result.stderr
    assert not (tmp_path / "out").exists()


def test_the_same_relative_path_from_two_folders_is_refused(model, tmp_path):
    write_image(tmp_path / "day1" / "img.jpg")
    write_image(tmp_path / "day2" / "img.jpg")
    result = invoke(tmp_path / "day1", tmp_path / "day2", "--model", model, "--out", tmp_path / "out")
    assert_one_line_error(result, "would both be written to")
    assert "day1" in result.stderr and "day2" in result.stderr


def test_one_image_given_twice_is_segmented_once(model, photos, tmp_path):
    result = invoke(photos, photos / "a.jpg", "--model", model, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"wrote 2 label map(s) to {tmp_path / 'out'}\n"
    assert read_label_png(tmp_path / "out" / "a.png").shape == (6, 10)
    assert (read_label_png(tmp_path / "out" / "sub" / "b.png") == 2).all()  # green: the second class


@pytest.mark.parametrize("kind", ["photo", "text", "folder", "grey-png"])
def test_an_existing_target_that_is_not_a_label_map_is_not_replaced(model, photos, tmp_path, kind):
    out = tmp_path / "out"
    target = out / "a.png"
    if kind == "folder":
        (target / "inner").mkdir(parents=True)
    elif kind == "text":
        out.mkdir()
        target.write_text("not an image")
    elif kind == "photo":
        write_image(target)
    else:
        out.mkdir()
        Image.new("L", (4, 4)).save(target)
    before = checksums(out)
    result = invoke(photos, "--model", model, "--out", out)
    assert_one_line_error(result, "not a label PNG")
    assert checksums(out) == before


def test_a_rerun_replaces_its_own_label_maps_and_removes_stale_temp_files(model, photos, tmp_path):
    out = tmp_path / "out"
    assert invoke(photos, "--model", model, "--out", out).exit_code == 0
    first = checksums(out)
    stale = out / "sub" / ".b.png.k1ll3d.tseg-tmp"  # what a run killed mid-write leaves
    stale.write_bytes(b"half a png")
    shutil.copy(out / "sub" / "b.png", out / "a.png")  # another label map at a's place
    result = invoke(photos, "--model", model, "--out", out)
    assert result.exit_code == 0, result.output
    assert checksums(out) == first and not stale.exists()
    (out / "a.png").write_bytes(b"")  # an empty file is not a label map: not replaced
    assert_one_line_error(invoke(photos, "--model", model, "--out", out), "not a label PNG")
    assert (out / "a.png").read_bytes() == b""


def test_a_symlink_leading_out_of_out_is_refused(model, photos, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "sub").symlink_to(outside, target_is_directory=True)
    result = invoke(photos, "--model", model, "--out", out)
    assert_one_line_error(result, "would lie outside --out")
    assert list(outside.iterdir()) == [] and not (out / "a.png").exists()


@pytest.mark.parametrize("relative", ["../escape.jpg", "a/../../escape.jpg", "/abs/escape.jpg"])
def test_plan_targets_keeps_every_target_inside_out(tmp_path, relative):
    with pytest.raises(TsegError, match="would lie outside out='") as caught:
        plan_targets(tmp_path / "out", [("val.json image 1", Path(relative))])
    assert "--" not in str(caught.value)
    assert plan_targets(tmp_path / "out", [("x", Path("a/b.jpg"))]) == [tmp_path / "out" / "a" / "b.png"]


def test_coco_file_names_sharing_a_label_png_are_refused(model, tmp_path):
    root = tmp_path / "data"
    write_image(root / "im" / "a.jpg")
    write_image(root / "im" / "a.png")
    images = [
        {"id": 1, "file_name": "im/a.jpg", "height": 6, "width": 10},
        {"id": 2, "file_name": "im/a.png", "height": 6, "width": 10},
    ]
    categories = [{"id": 1, "name": "Metal"}, {"id": 2, "name": "Paper"}, {"id": 3, "name": "Glass"}]
    (root / "val.json").write_text(json.dumps({"images": images, "categories": categories, "annotations": []}))
    result = invoke("--coco", root / "val.json", "--model", model, "--out", tmp_path / "out")
    assert_one_line_error(result, "would both be written to")
    assert "im/a.jpg" in result.stderr and "im/a.png" in result.stderr


def test_an_eval_json_that_is_a_folder_is_refused_before_any_work(model, tiny_coco_dir, tmp_path):
    (tmp_path / "out" / "eval.json").mkdir(parents=True)
    result = invoke("--coco", tiny_coco_dir / "val.json", "--model", model, "--out", tmp_path / "out", "--eval")
    assert_one_line_error(result, "eval.json exists and is a folder, not a file tseg wrote")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["eval.json"]


def test_eval_with_a_model_of_other_classes_is_refused(tiny_coco_dir, tmp_path):
    three = conv_model(tmp_path / "three.onnx")  # 3 classes; the split has 4 with background
    result = invoke("--coco", tiny_coco_dir / "val.json", "--model", three, "--out", tmp_path / "out", "--eval")
    assert_one_line_error(result, "the model has 3 classes but val.json has 4")
    assert not (tmp_path / "out" / "eval.json").exists()


def test_crf_tune_with_a_model_of_other_classes_is_refused_before_the_search(tiny_coco_dir, tmp_path):
    three = conv_model(tmp_path / "three.onnx")
    result = invoke("--coco", tiny_coco_dir / "val.json", "--model", three, "--crf-tune")
    assert_one_line_error(result, "the model has 3 classes but val.json has 4")
    assert not (tmp_path / CRF_FILE).exists()


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{img}", "--out", "{out}", "--crf-iterations", "3"], "--crf-iterations needs --crf"),
        (["{img}", "--out", "{out}", "--crf-bilateral-srgb", "5"], "--crf-bilateral-srgb needs --crf"),
        (["{img}", "--out", "{out}", "--tune-images", "3"], "--tune-images needs --crf-tune"),
        (["{img}", "--crf-tune", "--coco", "{val}"], "does not take PATHS"),
        (["--crf-tune", "--coco", "{val}", "--out", "{out}"], "--out does not apply to --crf-tune"),
        (["--crf-tune", "--coco", "{val}", "--crf"], "--crf does not apply to --crf-tune"),
        (["--crf-tune", "--coco", "{val}", "--eval"], "--eval does not apply to --crf-tune"),
        (["--crf-tune", "--coco", "{val}", "--crf-bilateral-sxy", "9"], "--crf-bilateral-sxy does not apply"),
        (["--crf-tune"], "--crf-tune needs --coco"),
        (["{img}", "--out", "{out}", "--eval"], "--eval and --data need --coco"),
        (["{img}", "--out", "{out}", "--data", "{out}"], "--eval and --data need --coco"),
        (["{img}", "--out", "{out}", "--submission", "{out}.csv"], "--submission needs --coco"),
        (["{img}", "--out", "{out}", "--batch-size", "0"], "--batch-size"),
        (["{img}", "--out", "{out}", "--workers", "-1"], "--workers"),
        (["{img}", "--out", "{out}", "--tta", "vflip"], "--tta"),
        (["{img}", "--out", "{out}", "--tta-scales", "a,b"], "Error: --tta-scales: need comma-separated numbers"),
        (
            ["{img}", "--out", "{out}", "--tta", "hflip", "--tta-scales", "0.75,1", "--device", "tensorrt"],
            "Error: TTA scale(s) 0.75 with --device tensorrt: the TensorRT engine takes the model's input size only;"
            " use --tta hflip without --tta-scales, or --device cuda",
        ),
        (["--crf-tune", "--coco", "{val}", "--workers", "1"], "--workers does not apply to --crf-tune"),
        (["--crf-tune", "--coco", "{val}", "--overlay", "{out}"], "--overlay does not apply to --crf-tune"),
        (["--out", "{out}"], "nothing to segment"),
        (["{img}", "--coco", "{val}", "--out", "{out}"], "give either PATHS or --coco"),
        (["{img}", "--out", "{out}", "--crf", "--crf-gaussian-compat", "nan"], "gaussian_compat must be a finite"),
        (["{img}", "--out", "{out}", "--crf", "--crf-bilateral-sxy", "inf"], "bilateral_sxy must be a finite"),
        (["{img}", "--out", "{out}", "--crf", "--crf-gaussian-sxy", "-1"], "gaussian_sxy must be > 0"),
        (["{img}", "--out", "{out}", "--crf", "--crf-iterations", "100000"], "--crf-iterations"),
        (["{img}", "--out", "{out}", "--max-image-pixels", "0"], "--max-image-pixels"),
        (["{img}", "--out", "{out}", "--max-image-pixels", "2e8"], "--max-image-pixels"),
        (["{img}", "--out", "{out}", "--device", "gpu"], "--device"),
        (["{img}", "--out", "{out}", "--threads", "100000"], "--threads"),
        (["{img}", "--out", "{out}", "--no-such-flag"], "--no-such-flag"),
        (["{img}", "--out", "{out}", "--threads", "x"], "--threads"),
    ],
)
def test_settings_that_would_be_ignored_or_are_invalid_are_one_line(
    model, photos, tiny_coco_dir, tmp_path, args, message
):
    values = {"img": photos / "a.jpg", "out": tmp_path / "out", "val": tiny_coco_dir / "val.json"}
    result = invoke(*[a.format(**values) for a in args], "--model", model)
    assert_one_line_error(result, message)
    assert not (tmp_path / "out").exists() and not (model.parent / CRF_FILE).exists()


def test_check_combinations_accepts_what_each_mode_uses():
    check_combinations(command=main, given={"out", "use_crf", "iterations", "device"}, has_paths=True, has_coco=False)
    check_combinations(command=main, given={"out", "evaluate", "data", "use_crf"}, has_paths=False, has_coco=True)
    check_combinations(command=main, given={"crf_tune", "coco", "data", "tune_images", "iterations"},
                       has_paths=False, has_coco=True)


@pytest.mark.parametrize("content", ['{"iterations": "5"}', '{"iterations": 5.5}', '{"sxy": 3}', "[", "[" * 5000])
def test_a_bad_crf_json_beside_the_model_is_one_line(model, photos, tmp_path, content):
    (model.parent / CRF_FILE).write_text(content)
    result = invoke(photos, "--model", model, "--out", tmp_path / "out", "--crf")
    assert_one_line_error(result, CRF_FILE)
    assert not (tmp_path / "out").exists()


def test_flags_override_crf_json_which_overrides_the_defaults(tmp_path):
    model = tmp_path / "m.onnx"
    assert resolve_crf_params(model, {"iterations": None}) == CrfParams()
    (tmp_path / CRF_FILE).write_text(json.dumps({"iterations": 7, "bilateral_srgb": 20.0, "gaussian_sxy": 2}))
    params = resolve_crf_params(model, {"iterations": None, "gaussian_sxy": 4.0, "bilateral_compat": 1.0})
    assert params == CrfParams(iterations=7, bilateral_srgb=20.0, gaussian_sxy=4.0, bilateral_compat=1.0)
    (tmp_path / CRF_FILE).unlink()
    (tmp_path / CRF_FILE).mkdir()  # a folder with the file's name is not "no crf.json"
    with pytest.raises(TsegError, match="cannot read CRF parameters"):
        resolve_crf_params(model, {})


def test_max_image_pixels_refuses_bigger_images_in_one_line_and_only_while_the_command_runs(model, photos, tmp_path):
    from tseg.runtime import pixel_limit

    before = pixel_limit.max_image_pixels()
    image = photos / "a.jpg"  # 10 x 6 = 60 pixels
    result = invoke(image, "--model", model, "--out", tmp_path / "out", "--max-image-pixels", "59")
    assert result.exit_code == 1 and result.stdout == ""
    assert without_auto_note(result) == [
        f"failed: {image}: is 10x6: 60 pixels is over the limit of 59 that guards against decompression bombs;"
        " if the image is genuine, raise the limit with --max-image-pixels 60 (or the environment variable"
        " TSEG_MAX_IMAGE_PIXELS; 'none' removes the limit)",
        f"Error: 0 written, 1 failed (listed in {tmp_path / 'out' / 'errors.txt'})",
    ]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["errors.txt"]
    for limit in ("60", "none"):
        result = invoke(image, "--model", model, "--out", tmp_path / "out", "--max-image-pixels", limit)
        assert result.exit_code == 0, result.output
    assert pixel_limit.max_image_pixels() == before


# ----------------------------------------------------------------------------- stdout


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_stdout_holds_only_tseg_results(tiny_onnx, tiny_coco_dir, tmp_path, device):
    """The installed command, in a subprocess: ONNX Runtime (and OpenVINO, where auto picks it) print
    nothing on stdout or stderr; auto's one note is tseg's."""
    out = tmp_path / "out"
    args = [str(tiny_coco_dir / "rgb"), "--model", str(tiny_onnx), "--out", str(out), "-q", "--device", device]
    run = subprocess.run(
        [sys.executable, "-m", "tseg.runtime.infer.cli", *args], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"wrote 3 label map(s) to {out}\n"
    assert (without_auto_note(run) if device == "auto" else run.stderr.splitlines()) == []
    assert sorted(p.name for p in out.iterdir()) == ["000.png", "003.png", "006.png"]
    assert all(np.asarray(Image.open(p)).max() < 4 for p in out.iterdir())
