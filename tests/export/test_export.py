import json

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner

from tseg.export.cli import main as export_cli
from tseg.export.parity import compare, generated_inputs
from tseg.runtime.model.metadata import ModelMetadata
from tseg.train.checkpoints import load_checkpoint, model_from_checkpoint


def test_onnx_has_dynamic_axes_metadata_and_passes_checker(tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims][1] == 3
    assert all(dims[i].dim_param for i in (0, 2, 3)), "batch, height and width must be dynamic"
    meta = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
    assert meta.classes == ("Background", "Metal", "Paper", "Glass")
    assert meta.input_size == (32, 32) and meta.model_name == "deeplabv3_mobilenet_v3_large"
    assert meta.mean == pytest.approx((0.485, 0.456, 0.406))


def test_parity_report_saved_beside_the_model(tiny_onnx):
    report = json.loads(tiny_onnx.with_suffix(".parity.json").read_text())
    assert report["passed"] and report["worst_argmax_agreement"] >= 0.999
    sizes = {(c["height"], c["width"]) for c in report["cases"]}
    assert (32, 32) in sizes and len(sizes) >= 2, "a size other than the training size is checked"


def test_parity_detects_a_different_model(tiny_run, tiny_onnx):
    model, spec = model_from_checkpoint(load_checkpoint(tiny_run.run_dir / "best.pt"))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    report = compare(model, tiny_onnx, generated_inputs(spec))
    assert not report.passed and report.max_abs_diff > 1e-2


def test_cli_exports_with_dataset_images(tiny_export):
    """The shared export (tests/conftest.py) ran under umask 027 beside stale temp files of a killed export:
    those of the same output go, another output's stays; files get the umask's mode."""
    assert "PASS" in tiny_export.stdout and "rgb/006.jpg" in tiny_export.stdout
    assert not any(p.exists() for p in tiny_export.stale) and tiny_export.kept.is_file()
    for path in (*tiny_export.files.values(), tiny_export.parity):
        assert path.stat().st_mode & 0o777 == 0o640, path
    report = json.loads(tiny_export.parity.read_text())  # strict JSON (no NaN/Infinity)
    assert report["passed"] and all(isinstance(c["max_abs_diff"], float) for c in report["cases"])


def test_cli_rejects_a_checkpoint_that_is_not_tsegs(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("hello")
    for name in ("other.pt", "text.pt", "missing.pt"):
        result = CliRunner().invoke(export_cli, ["--onnx", str(tmp_path / name)])
        assert result.exit_code == 1
        assert result.output.startswith("Error:") and len(result.output.strip().splitlines()) == 1
    assert (
        "not a tseg checkpoint"
        in CliRunner().invoke(export_cli, ["--onnx", str(tmp_path / "other.pt")]).output
    )


def test_onnx_runs_at_other_sizes_and_batches(tiny_onnx, tiny_run):
    from tseg.runtime.model.session import create_session

    model, _ = model_from_checkpoint(load_checkpoint(tiny_run.run_dir / "best.pt"))
    session = create_session(tiny_onnx, device="cpu")
    x = np.random.default_rng(0).normal(size=(3, 3, 45, 61)).astype(np.float32)
    got = session.run(None, {"image": x})[0]
    with torch.no_grad():
        expected = model(torch.from_numpy(x))["out"].numpy()
    assert got.shape == (3, 4, 45, 61)
    np.testing.assert_allclose(got, expected, atol=1e-4)
