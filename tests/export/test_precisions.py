"""tseg-export --precision: parsing, the accuracy gate, rejection, and one-line refusals."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from tseg.export.accuracy import (
    DEFAULT_MIN_AGREEMENT,
    PrecisionVerdict,
    SplitScores,
    parse_min_agreement,
    score_split,
)
from tseg.export.cli import main as export_cli
from tseg.export.parity import ParityCase
from tseg.export.precisions import failure_line, parse_precisions
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint


def test_parse_precisions_keeps_fp32_first_and_refuses_unknown_ones():
    assert parse_precisions("int8,fp16") == ("fp32", "fp16", "int8")
    assert parse_precisions(" FP16 , fp16") == ("fp32", "fp16")
    assert parse_precisions(["fp32"]) == ("fp32",)
    assert parse_precisions("bf16,int8") == ("fp32", "int8", "bf16")
    unknown = "unknown precision 'fp8'; valid: fp32, fp16, int8, bf16"
    for bad, message in (("fp8", unknown), (" , ", "need one or more")):
        with pytest.raises(TsegError, match=message):
            parse_precisions(bad)


def test_parse_min_agreement_merges_over_the_defaults():
    assert parse_min_agreement("0.99") == {**DEFAULT_MIN_AGREEMENT, "fp32": 0.99}
    assert parse_min_agreement("int8=0.5, fp16=1") == {**DEFAULT_MIN_AGREEMENT, "int8": 0.5, "fp16": 1.0}
    assert parse_min_agreement("bf16=0.9") == {**DEFAULT_MIN_AGREEMENT, "bf16": 0.9}
    for bad in ("2", "int8=x", "fp8=0.9", "", "nan"):
        with pytest.raises(TsegError, match="^min_agreement: "):
            parse_min_agreement(bad)


def _case(name: str, agreement: float, diff: float = 1e-3) -> ParityCase:
    return ParityCase(name=name, height=8, width=8, max_abs_diff=diff, argmax_agreement=agreement)


def test_verdict_judges_low_precisions_on_real_images_and_mean_iou():
    cases = (_case("generated 32x32", 0.90), _case("rgb/006.jpg", 0.99))
    fp16 = PrecisionVerdict("fp16", "m.fp16.onnx", cases, min_agreement=0.98)
    assert fp16.passed and fp16.worst_agreement == 0.99  # generated noise does not judge FP16
    fp32 = PrecisionVerdict("fp32", "m.onnx", cases, min_agreement=0.98)
    assert not fp32.passed and "argmax agreement 90.0000% < 98.00%" in fp32.failures()[0]
    split = SplitScores(miou=0.70, agreement=0.99, max_abs_diff=0.1)
    int8 = PrecisionVerdict("int8", "m.int8.onnx", cases, 0.95, split=split, torch_miou=0.72, max_miou_drop=0.01)
    assert int8.miou_drop == pytest.approx(0.02)
    assert int8.failures() == ["val mIoU 0.7000 vs PyTorch 0.7200: drop 0.0200 > max_miou_drop=0.01"]
    better = PrecisionVerdict("int8", "m.int8.onnx", cases, 0.95, split=split, torch_miou=0.60)
    assert better.passed  # a higher mIoU than PyTorch's is no drop
    nan = PrecisionVerdict("fp16", "x", (_case("a.jpg", 1.0, float("nan")),), 0.9)
    assert not nan.passed and json.dumps(nan.to_dict(), allow_nan=False)
    assert failure_line([fp16, int8]).startswith("int8 rejected (val mIoU 0.7000")


def test_score_split_of_the_model_itself_is_exact_agreement(tiny_run, tiny_coco_dir):
    from tseg.export.accuracy import torch_runner

    model, spec = model_from_checkpoint(load_checkpoint(tiny_run.run_dir / "best.pt"))
    val = CocoDataset(tiny_coco_dir / "val.json", root=tiny_coco_dir)
    run = torch_runner(model)
    flipped = lambda batch: -run(batch)  # noqa: E731  (the least likely class wins: far from PyTorch)
    torch_miou, scores = score_split(run, {"same": run, "flipped": flipped}, val, spec)
    assert scores["same"] == SplitScores(miou=torch_miou, agreement=1.0, max_abs_diff=0.0)
    assert scores["flipped"].agreement < 0.5 and scores["flipped"].max_abs_diff > 0


def _invoke(args):
    result = CliRunner().invoke(export_cli, args)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--precision", "fp32,bf8"], "unknown precision 'bf8'"),
        (["--precision", "int8"], "int8 needs calibration images: give --data ROOT"),
        (["--precision", "int8", "--data", "{data}", "--calib-images", "0"], "--calib-images must be >= 1"),
        (["--precision", "int8", "--data", "{data}", "--train-json", "nope.json"], "has no training split nope.json"),
        (["--min-agreement", "int8=2"], "Invalid value for '--min-agreement'"),
        (["--max-miou-drop", "-1"], "Invalid value for '--max-miou-drop'"),
    ],
)
def test_bad_precision_options_are_one_line_and_write_nothing(tiny_run, tiny_coco_dir, tmp_path, extra, message):
    checkpoint = tmp_path / "best.pt"
    shutil.copy(tiny_run.run_dir / "best.pt", checkpoint)
    args = ["--onnx", str(checkpoint), *[a.replace("{data}", str(tiny_coco_dir)) for a in extra]]
    code, output = _invoke(args)
    assert code == 1 and message in output and len(output.strip().splitlines()) == 1, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_every_precision_is_written_described_and_judged(tiny_export):
    import onnx

    from tseg.runtime.model.metadata import ModelMetadata

    files, output = tiny_export.files, tiny_export.output
    for precision, path in files.items():
        proto = onnx.load(str(path), load_external_data=False)
        meta = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
        assert meta.precision == precision
        assert bool(meta.calibration) == (precision == "int8")
    calibration = ModelMetadata.from_props(
        {p.key: p.value for p in onnx.load(str(files["int8"]), load_external_data=False).metadata_props}
    ).calibration
    assert calibration["images"] == 4 and calibration["split"].endswith("train.json") and calibration["method"]
    assert calibration["target"] == "cpu"
    report = json.loads(tiny_export.parity.read_text())
    rows = {row["precision"]: row for row in report["precisions"]}
    assert list(rows) == ["fp32", "fp16", "int8"] and report["passed"]
    for row in rows.values():
        assert row["passed"] and 0 <= row["val_miou"] <= 1 and row["torch_val_miou"] == rows["fp32"]["torch_val_miou"]
    assert abs(rows["fp32"]["miou_drop"]) < 1e-6 and rows["fp32"]["val_agreement"] > 0.999
    for precision in ("fp16", "int8"):
        assert f"wrote {files[precision]}" in output
    assert "per precision, against PyTorch" in output and "int8" in output


def test_the_runtime_runs_every_precision_unchanged(tiny_export):
    from tseg.runtime.segment.segmenter import Segmenter

    image = np.random.default_rng(0).integers(0, 256, (40, 52, 3), dtype=np.uint8)
    for path in (tiny_export.fp16, tiny_export.int8):
        prediction = Segmenter(path, device="cpu").predict(image)
        assert prediction.labels.shape == (40, 52) and prediction.labels.max() < 4


def test_a_file_that_fails_its_gate_is_renamed_and_the_exit_code_is_1(tiny_run, tiny_coco_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(tiny_coco_dir, data)
    for image in json.loads((data / "train.json").read_text())["images"]:  # blank calibration images
        from PIL import Image

        path = data / image["file_name"]
        Image.new("RGB", Image.open(path).size).save(path)
    out = tmp_path / "m.onnx"
    code, output = _invoke(
        ["--onnx", str(tiny_run.run_dir / "best.pt"), "-o", str(out), "--data", str(data),
         "--precision", "int8", "--calib-images", "2", "--min-agreement", "int8=1"]
    )  # fmt: skip
    assert code == 1, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("Error: int8 rejected (") and "m.int8.rejected.onnx" in last
    assert not out.with_suffix(".int8.onnx").exists() and out.with_suffix(".int8.rejected.onnx").is_file()
    assert out.is_file(), "fp32 passed its own gate and stays"
    report = json.loads(out.with_suffix(".parity.json").read_text())
    assert not report["passed"] and report["precisions"][1]["rejected_as"].endswith("m.int8.rejected.onnx")


def test_triton_repository_gets_each_file_that_passes(tiny_export):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tiny_export.triton
    assert sorted(p.name for p in repo.iterdir()) == ["best", "best_fp16", "best_int8"]
    for name, path in (("best", tiny_export.fp32), ("best_int8", tiny_export.int8)):
        config = text_format.Parse((repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        assert config.name == name and config.max_batch_size == 4 and config.platform == "onnxruntime_onnx"
        assert (repo / name / "1" / "model.onnx").read_bytes() == path.read_bytes()
        assert f"Triton model: {repo / name}" in tiny_export.output


@pytest.mark.parametrize(
    ("setup", "extra", "message"),
    [
        ("other", [], "holds other content (notes.txt)"),
        ("taken", [], "already has a model 'm'"),
        ("none", ["--triton-name", "x", "--precision", "fp32,fp16"], "--triton-name names one model"),
        ("none", ["--triton-name", "a/b"], "a/b"),
        ("no-repo", ["--triton-trt-fp16"], "go with --triton REPO"),
    ],
)
def test_triton_refusals_come_before_any_export(tiny_run, tmp_path, setup, extra, message):
    repo = tmp_path / "repo"
    repo.mkdir()
    if setup == "other":
        (repo / "notes.txt").write_text("mine")
    if setup == "taken":
        (repo / "m").mkdir()
        (repo / "m" / "config.pbtxt").write_text('name: "m"')
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    triton = [] if setup == "no-repo" else ["--triton", str(repo)]
    code, output = _invoke(["--onnx", str(tiny_run.run_dir / "best.pt"), "-o", str(tmp_path / "m.onnx"), *triton,
                            *extra])
    assert code == 1 and message in output and len(output.strip().splitlines()) == 1, output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_the_cli_default_thresholds_are_the_librarys():
    option = next(p for p in export_cli.params if p.name == "min_agreement")
    assert parse_min_agreement(option.default) == DEFAULT_MIN_AGREEMENT  # the CLI spells them out: no torch at --help


def test_a_later_export_keeps_the_records_of_files_it_leaves_in_place(tiny_export, tiny_run, tmp_path):
    """fp32,fp16,int8 then --triton (FP32 only), the INT8 file changed in between: the FP16 record stays
    (its file is unchanged), the INT8 one goes (a record never describes another file; a file that is
    gone is covered by the kept_records test below)."""
    from tseg.export.records import file_sha256

    for path in (*tiny_export.files.values(), tiny_export.parity):  # the expensive files, reused
        shutil.copy(path, tmp_path / path.name)
    out = tmp_path / "best.onnx"
    earlier = {r["precision"]: r for r in json.loads((tmp_path / "best.parity.json").read_text())["precisions"]}
    with open(out.with_suffix(".int8.onnx"), "ab") as stream:
        stream.write(b"\0")
    code, output = _invoke(["--onnx", str(tiny_run.run_dir / "best.pt"), "-o", str(out),
                            "--triton", str(tmp_path / "repo"), "--triton-device", "cpu"])
    assert code == 0, output
    assert "kept the earlier fp16 records" in output
    report = json.loads(out.with_suffix(".parity.json").read_text())
    rows = {row["precision"]: row for row in report["precisions"]}
    assert list(rows) == ["fp32", "fp16"] and report["passed"]
    assert rows["fp32"]["sha256"] == file_sha256(out) and rows["fp32"]["cases"] != earlier["fp32"]["cases"]
    fp16 = out.with_suffix(".fp16.onnx")
    assert rows["fp16"] == {**earlier["fp16"], "path": str(fp16)} and rows["fp16"]["sha256"] == file_sha256(fp16)
    assert earlier["fp16"]["path"] != str(fp16), "the records follow the files, not their folder"
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["best"]  # only FP32 was asked for Triton


def _fp32_parts(path):
    cases = (_case("generated 32x32", 1.0),)
    from tseg.export.parity import ParityReport

    return ParityReport(cases, ("CPUExecutionProvider",)), PrecisionVerdict("fp32", str(path), cases, 0.999)


def test_kept_records_follow_each_files_digest_and_a_failed_one_fails_the_report(tmp_path):
    from tseg.export.records import file_sha256, kept_records, merged_report

    fp16, int8 = tmp_path / "m.fp16.onnx", tmp_path / "m.int8.onnx"
    fp16_rejected, int8_rejected = tmp_path / "m.fp16.rejected.onnx", tmp_path / "m.int8.rejected.onnx"
    fp16_rejected.write_bytes(b"fp16 model")
    int8.write_bytes(b"int8 model")
    report = {"cases": [], "precisions": [
        {"precision": "fp16", "path": "elsewhere/m.fp16.onnx", "passed": False, "rejected_as": "x.rejected.onnx",
         "sha256": file_sha256(fp16_rejected)},
        {"precision": "int8", "path": "m.int8.onnx", "passed": True, "rejected_as": None},  # no digest: dropped
    ]}
    files = {"fp16": (fp16, fp16_rejected), "int8": (int8, int8_rejected)}
    [kept] = kept_records(report, files)
    assert kept["precision"] == "fp16" and kept["path"] == str(fp16) and kept["rejected_as"] == str(fp16_rejected)
    fp32_report, fp32 = _fp32_parts(tmp_path / "m.onnx")
    body = merged_report(fp32_report, [fp32], [kept])
    assert [r["precision"] for r in body["precisions"]] == ["fp32", "fp16"]
    assert body["passed"] is False, "a kept record that failed keeps the report failed"
    assert merged_report(fp32_report, [fp32], [])["passed"] is True
    report["precisions"][1]["sha256"] = file_sha256(int8)
    assert [r["precision"] for r in kept_records(report, files)] == ["fp16", "int8"]
    int8.write_bytes(b"another int8 model")
    fp16_rejected.unlink()
    assert kept_records(report, files) == []
    assert kept_records(report, {}) == [] and kept_records(None, files) == []


@pytest.mark.parametrize("content", ["fifo", b"not json", b'{"other": "json"}', b"[1, 2]"])
def test_something_at_the_report_path_that_is_not_a_report_is_refused_before_any_work(tiny_run, tmp_path, content):
    import os

    report = tmp_path / "m.parity.json"
    if content == "fifo":
        os.mkfifo(report)  # opening it would block forever
    else:
        report.write_bytes(content)
    code, output = _invoke(["--onnx", str(tiny_run.run_dir / "best.pt"), "-o", str(tmp_path / "m.onnx")])
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert "m.parity.json" in output and ("not a tseg parity report" in output or "is a FIFO" in output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.parity.json"]


def test_bf16_judges_the_fp32_file_through_openvino_and_writes_no_file(tiny_run, tiny_coco_dir, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "m.onnx"
    code, output = _invoke(
        ["--onnx", str(tiny_run.run_dir / "best.pt"), "-o", str(out), "--data", str(tiny_coco_dir),
         "--precision", "fp32,bf16", "--min-agreement", "bf16=0", "--max-miou-drop", "1"]
    )  # fmt: skip
    assert code == 0, output
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["m.onnx", "m.parity.json"]
    report = json.loads(out.with_suffix(".parity.json").read_text())
    fp32, bf16 = report["precisions"]
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert bf16["path"] == str(out) and bf16["sha256"] == fp32["sha256"] and bf16["passed"]
    assert bf16["details"]["providers"] == ["OpenVINO CPU (bf16)"]
    assert bf16["val_miou"] is not None and bf16["torch_val_miou"] == fp32["torch_val_miou"]


def test_a_failed_bf16_verdict_leaves_the_fp32_file_it_ran(tmp_path):
    from tseg.export.precisions import reject_failures

    fp32 = tmp_path / "m.onnx"
    fp32.write_bytes(b"model")
    verdict = PrecisionVerdict(precision="bf16", path=str(fp32), cases=(_case("a", 0.5),), min_agreement=0.98)
    (kept,) = reject_failures([verdict])
    assert not kept.passed and not kept.rejected_as and fp32.read_bytes() == b"model"
    assert failure_line([kept]).startswith("bf16 rejected (")


def test_bf16_without_openvino_is_one_line_before_any_work(tiny_run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    checkpoint = tmp_path / "best.pt"
    shutil.copy(tiny_run.run_dir / "best.pt", checkpoint)
    code, output = _invoke(["--onnx", str(checkpoint), "--precision", "bf16"])
    assert code == 1 and len(output.strip().splitlines()) == 1 and "pip install 'tseg[openvino]'" in output, output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]
