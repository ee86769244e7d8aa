"""tseg-bench with every option on the tiny trained model: ONNX and PyTorch eager rows, --coco, --stages, --crf."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("torch")

from tseg.runtime.bench.cli import main  # noqa: E402


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
    stages = data["sections"]["Pipeline stages (tseg-infer, per image)"]
    assert len(stages) == 1 and stages[0]["status"] == "ran" and float(stages[0]["session ms"]) > 0
    assert float(stages[0]["pipeline img/s"]) > 0 and float(stages[0]["pipeline+CRF img/s"]) > 0
    [crf] = data["sections"]["Dense CRF"]
    assert crf["classes"] == str(_num_classes(tiny_onnx))
    assert float(crf["tseg CRF p50 ms"]) > 0
    markdown = out_md.read_text()
    assert "(PyTorch eager)" in markdown and "**Dense CRF**" in markdown and "**Pipeline stages" in markdown


def _num_classes(model) -> int:
    from tseg.runtime.bench.measure import read_metadata

    return read_metadata(model).num_classes
