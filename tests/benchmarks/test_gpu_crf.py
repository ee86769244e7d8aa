"""benchmarks/gpu_crf.py, the GPU CRF's checks for a lent GPU machine: run here under Numba's
CUDA simulator on a tiny image (parity and the stage timings; the pipeline needs a GPU), and
its refusal where the CUDA CRF cannot run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_crf.py"


@pytest.mark.slow  # 20 s; the kernels' own simulator tests run in make test
def test_the_gpu_crf_checks_run_and_pass_in_the_simulator(tmp_path):
    pytest.importorskip("numba_cuda")
    out = tmp_path / "gpu_crf.json"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    run = subprocess.run([sys.executable, str(SCRIPT), "--size", "10", "--repeat", "1", "--json", str(out)],
                         capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(out.read_text())
    assert results["failed"] == []
    for name in ("default", "deeplab"):
        parity = results[f"crf_parity_{name}"]
        assert parity["agreement_with_cpu"] >= 0.999 and parity["max_dq_cpu"] <= 1e-3
        assert set(results[f"crf_ms_{name}"]) == {"build", "upload", "unary", "iterations", "labels", "total",
                                                  "on_device"}
    assert "crf_pipeline" not in results and "handoff" not in results  # no model: they need a GPU machine


def test_a_machine_without_the_cuda_crf_is_one_failed_check(monkeypatch):
    sys.path.insert(0, str(SCRIPT.parent))
    import gpu_crf

    from tseg.runtime.crf.cuda import device

    monkeypatch.setattr(device, "cuda_problem", lambda: "an NVIDIA GPU and its driver")
    reports = []
    gpu_crf.check_gpu_crf(None, {}, lambda name, ok, detail: reports.append((name, ok, detail)))
    assert reports == [("crf_gpu", False, "the CUDA CRF cannot run here: it needs an NVIDIA GPU and its driver")]
