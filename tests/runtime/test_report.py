"""tseg-infer --eval --report DIR: the files, the numbers against eval.json and the labels written,
the images chosen, and bad input (one line, exit 1). The page in a real browser: test_report_browser.py."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from tests.onnx_models import write_colour_model
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.infer.cli import main as infer_cli
from tseg.runtime.report.collect import ReportCollector, image_scores
from tseg.runtime.report.pictures import GAP
from tseg.runtime.report.write import is_report


@pytest.fixture
def model(tmp_path) -> Path:
    return write_colour_model(tmp_path / "model" / "colour.onnx")


@pytest.fixture
def val(tiny_coco_dir) -> Path:
    return tiny_coco_dir / "val.json"


def invoke(*args):
    return CliRunner().invoke(infer_cli, [*map(str, args), "-q"])


def make_report(model, val, out, report, *extra) -> str:
    result = invoke("--coco", val, "--model", model, "--out", out, "--eval", "--report", report, *extra)
    assert result.exit_code == 0, result.output
    return result.output


def per_image(report: Path) -> list[dict[str, str]]:
    with open(report / "per_image.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_report_with_crf_matches_eval_json_and_the_labels_written(model, val, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    output = make_report(model, val, out, report, "--crf", "--report-images", "1")
    assert f"report written to {report / 'index.html'}" in output
    scores = json.loads((out / "eval.json").read_text())
    numbers = json.loads((report / "report.json").read_text())
    assert numbers["model_alone"]["miou"] == scores["miou"]
    assert numbers["after_crf"]["miou"] == scores["crf_miou"]
    assert numbers["after_crf"]["pixel_accuracy"] == scores["crf_pixel_accuracy"]
    assert numbers["model_alone"]["iou"] == pytest.approx(scores["iou"], nan_ok=True)
    # what tseg-report needs besides the scores: the classes, their colours, where the split is
    assert numbers["classes"] == list(scores["iou"]) and len(numbers["palette"]) == len(numbers["classes"])
    assert numbers["split"] == {"json": str(val.absolute()), "root": str(val.parent.absolute())}

    coco = CocoDataset(val)
    rows = per_image(report)
    assert [row["file_name"] for row in rows] == [image.file_name for image in coco.images]
    finals = []
    for index, row in enumerate(rows):  # the CSV scores the labels tseg-infer wrote (after the CRF)
        written = read_label_png(out / Path(row["file_name"]).with_suffix(".png"))
        miou, accuracy = image_scores(coco.label_map(index), written, num_classes=4)
        assert float(row["crf_miou"]) == pytest.approx(miou, abs=1e-12)
        assert float(row["crf_pixel_accuracy"]) == pytest.approx(accuracy, abs=1e-12)
        assert (report / row["label_png"]).resolve() == (out / Path(row["file_name"]).with_suffix(".png")).resolve()
        finals.append(miou)
    assert numbers["worst"] == [int(np.argmin(finals))] and numbers["best"] == [int(np.argmax(finals))]

    page = (report / "index.html").read_text()
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "the page must open without a network"
    pictures = re.findall(r'<img src="pictures/(worst|best)-(\d+).jpg"', page)
    assert sorted(pictures) == sorted([("worst", str(numbers["worst"][0])), ("best", str(numbers["best"][0]))])
    for kind, index in pictures:
        with Image.open(report / "pictures" / f"{kind}-{index}.jpg") as image:
            image.load()
            tile = int(rows[int(index)]["width"])  # photo | truth | prediction | after the CRF, side by side
            assert image.width == 4 * tile + 3 * GAP and image.height > int(rows[int(index)]["height"])
    assert f'data-score="crf_miou">{scores["crf_miou"]:.4f}<' in page
    assert is_report(report)


def test_a_second_run_replaces_its_own_report(model, val, tmp_path):
    out, report = tmp_path / "out", tmp_path / "report"
    make_report(model, val, out, report, "--report-images", "2")
    assert len(list((report / "pictures").iterdir())) == 4
    make_report(model, val, out, report, "--report-images", "1")
    assert sorted(p.name.split("-")[0] for p in (report / "pictures").iterdir()) == ["best", "worst"]
    assert json.loads((report / "report.json").read_text())["after_crf"] is None


def test_collector_keeps_the_worst_and_the_best(tmp_path):
    """Five images with known mIoUs (ties included): the two worst and two best, ties in input order."""
    truth = np.zeros((4, 4), np.uint8)
    truth[:, 2:] = 1
    collector = ReportCollector(folder=tmp_path, num_classes=2, crf=False, count=2, names=list("abcde"),
                                label_pngs=list("abcde"))
    wrong = [0, 8, 2, 8, 0]  # pixels predicted wrong per image
    for index, count in enumerate(wrong):
        prediction = truth.copy()
        prediction.reshape(-1)[:count] = 1 - prediction.reshape(-1)[:count]

        class Result:
            pass

        result = Result()
        result.index, result.truth, result.labels, result.plain = index, truth, prediction, None
        result.image = np.zeros((4, 4, 3), np.uint8)
        collector(result)
    worst, best = collector.chosen()
    assert [k.row.index for k in worst] == [1, 3]
    assert [k.row.index for k in best] == [0, 4]
    collector.finish()
    assert len(per_image(tmp_path)) == 5


@pytest.mark.parametrize(
    "setup, extra, message",
    [
        (lambda d: (d.mkdir(), (d / "notes.txt").write_text("mine")), (), "exists and is not a tseg report"),
        (lambda d: d.write_text("a file"), (), "need a folder"),
        (lambda d: None, ("--report-images", "101"), "--report-images"),
    ],
)
def test_bad_report_folder_is_one_line(model, val, tmp_path, setup, extra, message):
    report = tmp_path / "report"
    setup(report)
    result = invoke("--coco", val, "--model", model, "--out", tmp_path / "out", "--eval", "--report", report, *extra)
    assert result.exit_code != 0
    assert message in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.png"))
    if (report / "notes.txt").exists():
        assert (report / "notes.txt").read_text() == "mine"


def test_report_needs_eval_and_an_annotated_split(model, val, tmp_path):
    result = invoke("--coco", val, "--model", model, "--out", tmp_path / "o1", "--report", tmp_path / "r")
    assert result.exit_code == 1 and "--report needs --coco and --eval" in result.output
    data = json.loads(val.read_text())
    data.pop("annotations")
    test_split = val.parent / "test-no-annotations.json"
    test_split.write_text(json.dumps(data))
    try:
        result = invoke("--coco", test_split, "--model", model, "--out", tmp_path / "o2", "--eval", "--report",
                        tmp_path / "r")
    finally:
        test_split.unlink()
    assert result.exit_code == 1 and "has no annotations" in result.output and result.output.count("\n") == 1
    assert not (tmp_path / "r").exists()
