"""tseg-bench with every option on the tiny trained model: ONNX and PyTorch eager rows, --coco, --stages, --crf."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from tseg.benchmarks.cli import main
from tseg.benchmarks.stages import CRF_HEADER, STAGE_HEADER, STAGES
from tseg.runtime.segment.refine import CrfParams


def test_every_option_on_the_tiny_model(tiny_onnx, tiny_run, tiny_coco_dir, tmp_path):
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    args = [
        str(tiny_onnx), "--checkpoint", str(tiny_run.run_dir / "best.pt"), "--sizes", "32", "--batch-sizes", "1,2",
        "--device", "cpu", "--threads", "1", "--coco", str(tiny_coco_dir / "val.json"), "--data", str(tiny_coco_dir),
        "--stages", "--crf", "--json", str(out_json), "--markdown", str(out_md),
        "--min-time", "0", "--min-runs", "2", "--warmup", "1", "--pause", "0", "--no-progress",
    ]
    import torch

    threads = torch.get_num_threads()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert torch.get_num_threads() == threads, "--threads 1 must not outlive the benchmark (a process-wide setting)"
    data = json.loads(out_json.read_text())
    onnx_rows = [r for r in data["rows"] if r["engine"] == "onnxruntime"]
    eager_rows = [r for r in data["rows"] if r["engine"] == "pytorch"]
    assert [r["batch"] for r in onnx_rows] == [1, 2] and [r["batch"] for r in eager_rows] == [1, 2]
    assert all(r["status"] == "ran" and r["runs"] >= 2 for r in data["rows"])
    # Two independent FLOP counts of the same network agree: the ONNX graph's and torch's flop counter.
    assert eager_rows[0]["gflops"] == pytest.approx(onnx_rows[0]["gflops"], rel=0.02)
    assert all(0 <= r["miou"] <= 1 for r in onnx_rows) and onnx_rows[0]["miou"] == onnx_rows[1]["miou"]
    # The eager rows are scored with the runtime's own pre- and post-processing: the same network, the same mIoU.
    assert eager_rows[0]["miou"] == eager_rows[1]["miou"]
    assert eager_rows[0]["miou"] == pytest.approx(onnx_rows[0]["miou"], abs=0.005)
    # The sections: one row each, every figure a finite number (a failed row shows "-" and "failed: ...").
    [stage] = data["sections"]["Pipeline stages (tseg-infer, per image)"]
    assert list(stage) == list(STAGE_HEADER) and stage["status"] == "ran", stage
    assert (stage["model"], stage["device"], stage["photo size"]) == (tiny_onnx.name, "cpu", "32x32")
    stage_ms = [_finite(stage[f"{name} ms"]) for name in STAGES]
    assert _finite(stage["sum ms"]) == pytest.approx(sum(stage_ms), abs=0.05 * len(STAGES))  # rounded to 0.1
    assert _finite(stage["pipeline img/s"]) >= 0 and _finite(stage["pipeline+CRF img/s"]) >= 0
    [crf] = data["sections"]["Dense CRF"]
    assert list(crf) == list(CRF_HEADER)
    assert (crf["size"], crf["classes"], crf["iterations"]) == ("32x32", str(_num_classes(tiny_onnx)),
                                                               str(CrfParams().iterations))
    assert _finite(crf["tseg CRF p50 ms"]) >= 0 and _finite(crf["pydensecrf p50 ms"]) >= 0  # pydensecrf2: dev
    markdown = out_md.read_text()
    assert "(PyTorch eager)" in markdown
    for title, header in (("Pipeline stages (tseg-infer, per image)", STAGE_HEADER), ("Dense CRF", CRF_HEADER)):
        assert f"**{title}**\n\n| {' | '.join(header)} |" in markdown, title


def _finite(cell: str) -> float:
    value = float(cell)
    assert math.isfinite(value), cell
    return value


def _num_classes(model) -> int:
    from tseg.benchmarks.rows import read_metadata

    return read_metadata(model).num_classes


def _one_line(result, fragment):
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and fragment in lines[0], result.output


def test_checkpoint_refusals_come_before_any_timing(tiny_onnx, tiny_run, tiny_coco_dir, tmp_path, monkeypatch):
    """A split with another class count than the checkpoint's, and eager rows with no size to run at."""
    from tseg.benchmarks import cli

    monkeypatch.setattr(cli, "measure_rows", lambda *a, **k: pytest.fail("bad input reached the timing"))
    data = json.loads((tiny_coco_dir / "val.json").read_text())
    dropped = data["categories"].pop()["id"]
    data["annotations"] = [a for a in data["annotations"] if a["category_id"] != dropped]
    split = tmp_path / "val3.json"
    split.write_text(json.dumps(data))
    checkpoint = str(tiny_run.run_dir / "best.pt")
    fast = ["--min-time", "0", "--min-runs", "1", "--no-progress"]
    result = CliRunner().invoke(main, ["--checkpoint", checkpoint, "--sizes", "32", "--coco", str(split),
                                       "--data", str(tiny_coco_dir), *fast])
    _one_line(result, "the checkpoint best.pt has 4 classes but val3.json has 3 (with background)")
    _one_line(CliRunner().invoke(main, ["--checkpoint", checkpoint, *fast]),
              "--checkpoint without a MODEL.onnx: give the eager rows' input sizes (--sizes)")
