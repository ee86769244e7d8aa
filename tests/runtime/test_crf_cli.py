"""tseg-infer's dense CRF end to end: --crf, --eval --crf, --crf-tune, and crf.json against flags.

The model is the hand-made colour model (tests/onnx_models.py) on the tiny COCO dataset: its
scores are known, so every label the CLI writes can be recomputed through the library path.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tests.onnx_models import COLOUR_CLASSES, write_colour_model
from tseg.runtime.crf.dense import dense_crf
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.data.metrics import ConfusionMatrix
from tseg.runtime.infer.cli import main as infer_cli
from tseg.runtime.infer.crf_tune import DEFAULT_GRID
from tseg.runtime.scores import labels_from_scores, softmax
from tseg.runtime.segment.refine import CRF_FILE, CrfParams
from tseg.runtime.segment.segmenter import Segmenter


@pytest.fixture
def model(tmp_path) -> Path:
    """A colour model alone in its own folder (crf.json is read and written beside it)."""
    return write_colour_model(tmp_path / "model" / "colour.onnx")


@pytest.fixture
def val(tiny_coco_dir) -> Path:
    return tiny_coco_dir / "val.json"


def invoke(*args):
    """tseg-infer on ONNX Runtime, the engine :func:`library_labels` recomputes every label with."""
    return CliRunner().invoke(infer_cli, [*map(str, args), "--device", "cpu", "-q"])


def run_ok(*args) -> str:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result.output


def written_labels(out: Path, coco: CocoDataset) -> list[np.ndarray]:
    return [read_label_png(out / Path(info.file_name).with_suffix(".png")) for info in coco.images]


def library_labels(model: Path, coco: CocoDataset, params: CrfParams | None) -> list[np.ndarray]:
    """The labels the library gives each image of ``coco``: plain, or after ``params``' CRF."""
    segmenter = Segmenter(model, device="cpu")
    labels = []
    for index in range(len(coco)):
        image = coco.read_image(index)
        scores = segmenter.scores(image)
        labels.append(labels_from_scores(scores) if params is None else params.refine(scores, image))
    return labels


def test_crf_writes_the_dense_crf_labels(model, val, tmp_path):
    run_ok("--coco", val, "--model", model, "--out", tmp_path / "crf", "--crf")
    run_ok("--coco", val, "--model", model, "--out", tmp_path / "plain")
    coco = CocoDataset(val)
    crf, plain = written_labels(tmp_path / "crf", coco), written_labels(tmp_path / "plain", coco)
    segmenter = Segmenter(model, device="cpu")
    for index, labels in enumerate(crf):
        image = coco.read_image(index)
        scores = segmenter.scores(image)
        # The CLI's labels are dense_crf's, called directly with the defaults.
        direct = dense_crf(softmax(scores), image, **CrfParams().crf_kwargs()).argmax(axis=0)
        np.testing.assert_array_equal(labels, direct)
    np.testing.assert_array_equal(np.concatenate([p.ravel() for p in plain]),
                                  np.concatenate([p.ravel() for p in library_labels(model, coco, None)]))
    assert any((a != b).any() for a, b in zip(crf, plain, strict=True)), "the CRF changed nothing"


def test_eval_with_crf_reports_both_mious(model, val, tmp_path):
    output = run_ok("--coco", val, "--model", model, "--out", tmp_path, "--eval", "--crf")
    coco = CocoDataset(val)
    truths = [coco.label_map(index) for index in range(len(coco))]
    plain_cm, crf_cm = ConfusionMatrix(4), ConfusionMatrix(4)
    for truth, plain, crf in zip(truths, library_labels(model, coco, None), written_labels(tmp_path, coco),
                                 strict=True):
        plain_cm.update(truth, plain)
        crf_cm.update(truth, crf)
    plain_scores, crf_scores = plain_cm.compute(), crf_cm.compute()
    assert plain_scores.miou != crf_scores.miou
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["miou"] == pytest.approx(plain_scores.miou, abs=1e-12)
    assert report["crf_miou"] == pytest.approx(crf_scores.miou, abs=1e-12)
    assert list(report["crf_iou"].values()) == pytest.approx(list(crf_scores.iou), abs=1e-12)
    assert report["crf"] == asdict(CrfParams(device="cpu"))  # the device as it ran: auto's choice for a CPU model
    assert f"without CRF: mIoU {plain_scores.miou:.4f}" in output
    assert f"with CRF:    mIoU {crf_scores.miou:.4f}" in output


def record_refine(monkeypatch) -> list[CrfParams]:
    """Replaces CrfParams.refine_logits: records the parameters the CLI resolved, returns plain labels."""
    seen: list[CrfParams] = []

    def refine_logits(params: CrfParams, logits: np.ndarray, image: np.ndarray, *, threads=None) -> np.ndarray:
        seen.append(params)
        return labels_from_scores(logits, image.shape[:2])

    monkeypatch.setattr(CrfParams, "refine_logits", refine_logits)
    return seen


@pytest.mark.parametrize(
    ("crf_json", "flags", "expected"),
    [
        (None, [], CrfParams()),
        (None, ["--crf-gaussian-sxy", "2.5"], CrfParams(gaussian_sxy=2.5)),
        ({"iterations": 0, "gaussian_sxy": 7.0, "bilateral_compat": 4.0}, [],
         CrfParams(iterations=0, gaussian_sxy=7.0, bilateral_compat=4.0)),
        ({"iterations": 0, "gaussian_sxy": 7.0, "bilateral_compat": 4.0},
         ["--crf-iterations", "5", "--crf-bilateral-srgb", "9", "--crf-gaussian-sxy", "1.5"],
         CrfParams(iterations=5, gaussian_sxy=1.5, bilateral_compat=4.0, bilateral_srgb=9.0)),
    ],
    ids=["defaults", "flag-over-defaults", "crf.json-over-defaults", "flags-over-crf.json"],
)
def test_flags_override_crf_json_which_overrides_defaults(model, val, tmp_path, monkeypatch, crf_json, flags,
                                                          expected):
    if crf_json is not None:
        (model.parent / CRF_FILE).write_text(json.dumps(crf_json))
    seen = record_refine(monkeypatch)
    run_ok("--coco", val, "--model", model, "--out", tmp_path / "out", "--crf", *flags)
    assert seen == [replace(expected, device="cpu")] * 3  # --crf-device auto, for a model on the CPU


def test_crf_json_and_flags_change_the_written_labels(model, val, tmp_path):
    """iterations=0 in crf.json: the CRF returns the softmax, so labels are the plain ones; a flag undoes it."""
    coco = CocoDataset(val)
    plain = library_labels(model, coco, None)
    (model.parent / CRF_FILE).write_text(json.dumps({"iterations": 0, "bilateral_srgb": 20.0}))
    run_ok("--coco", val, "--model", model, "--out", tmp_path / "file", "--crf")
    for written, expected in zip(written_labels(tmp_path / "file", coco), plain, strict=True):
        np.testing.assert_array_equal(written, expected)
    run_ok("--coco", val, "--model", model, "--out", tmp_path / "flag", "--crf", "--crf-iterations", "5")
    refined = library_labels(model, coco, CrfParams(iterations=5, bilateral_srgb=20.0))
    flagged = written_labels(tmp_path / "flag", coco)
    for written, expected in zip(flagged, refined, strict=True):
        np.testing.assert_array_equal(written, expected)
    assert any((a != b).any() for a, b in zip(flagged, plain, strict=True))


def test_crf_tune_writes_the_best_setting_beside_the_model(model, val):
    untouched = model.read_bytes()
    output = run_ok("--coco", val, "--model", model, "--crf-tune", "--tune-images", "2")
    saved = CrfParams.load(model.parent / CRF_FILE)
    assert model.read_bytes() == untouched
    assert sorted(p.name for p in model.parent.iterdir()) == sorted([CRF_FILE, model.name])

    lines = output.splitlines()
    assert lines[0].startswith("CRF grid search on 2 image(s)")
    rows = [line for line in lines[1:] if line.startswith("CRF ")]
    assert len(rows) == int(np.prod([len(v) for v in DEFAULT_GRID.values()]))
    (best_row,) = [line for line in rows if line.endswith("<- best")]
    keys = list(DEFAULT_GRID)
    assert [float(v) for v in best_row.split()[1:1 + len(keys)]] == [getattr(saved, k) for k in keys]
    assert saved.iterations == CrfParams().iterations

    # The printed figures are the mIoUs of the first two images, without and with the saved CRF.
    coco = CocoDataset(val)
    truths = [coco.label_map(index) for index in range(2)]
    for params, text in [(None, "no CRF"), (saved, "best mIoU")]:
        matrix = ConfusionMatrix(len(COLOUR_CLASSES))
        for truth, labels in zip(truths, library_labels(model, coco, params)[:2], strict=True):
            matrix.update(truth, labels)
        figure = f"{matrix.compute().miou:.4f}"
        assert any(text in line and figure in line for line in lines), (text, figure, output)

    # --crf without flags now uses the tuned parameters.
    with pytest.MonkeyPatch.context() as patch:
        seen = record_refine(patch)
        run_ok("--coco", val, "--model", model, "--out", model.parent.parent / "out", "--crf")
    assert seen == [replace(saved, device="cpu")] * 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--crf-tune"], "--coco"),
        (["--crf-tune", "--coco", "{val}", "--out", "{out}"], "--out"),
        (["{image}", "--crf-tune", "--coco", "{val}"], "PATHS"),
        (["--coco", "{val}", "--out", "{out}", "--crf-iterations", "3"], "--crf"),
        (["--coco", "{val}", "--out", "{out}", "--crf-bilateral-srgb", "5", "--crf-gaussian-sxy", "2"], "--crf"),
        (["--coco", "{val}", "--out", "{out}", "--crf", "--crf-bilateral-srgb", "0"], "bilateral_srgb"),
        (["--coco", "{val}", "--out", "{out}", "--crf", "--crf-gaussian-sxy", "nan"], "gaussian_sxy"),
    ],
    ids=["tune-without-coco", "tune-with-out", "tune-with-paths", "flag-without-crf", "flags-without-crf",
         "zero-width", "nan-width"],
)
def test_crf_settings_that_would_be_ignored_or_are_invalid_are_one_line_errors(model, val, tiny_coco_dir,
                                                                               tmp_path, args, message):
    values = {"val": val, "out": tmp_path / "out", "image": tiny_coco_dir / "rgb" / "000.jpg"}
    result = invoke(*[a.format(**values) for a in args], "--model", model)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not (model.parent / CRF_FILE).exists()
    assert not (tmp_path / "out").exists()


def test_bad_crf_json_is_one_line_naming_the_file(model, val, tmp_path):
    for content in ['{"iterations": -1}', '{"sxy": 3}', "[1, 2]", "{not json", '{"gaussian_sxy": "wide"}']:
        (model.parent / CRF_FILE).write_text(content)
        result = invoke("--coco", val, "--model", model, "--out", tmp_path / "out", "--crf")
        assert result.exit_code == 1, (content, result.output)
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and CRF_FILE in lines[0], (content, result.output)


def test_crf_tune_keeps_a_copy_of_the_model_untouched(tiny_onnx, val, tmp_path):
    """The exported tiny model (tests/conftest.py), copied first: tiny_onnx is shared between tests."""
    copy = tmp_path / "tiny" / "best.onnx"
    copy.parent.mkdir()
    shutil.copyfile(tiny_onnx, copy)
    output = run_ok("--coco", val, "--model", copy, "--crf-tune", "--tune-images", "1")
    assert "CRF grid search on 1 image(s)" in output and "<- best" in output
    assert copy.read_bytes() == tiny_onnx.read_bytes()
    CrfParams.load(copy.parent / CRF_FILE)
    assert not (tiny_onnx.parent / CRF_FILE).exists()
