"""The CRF on an NVIDIA GPU (issue 21), checked without one in Numba's CUDA simulator.

The simulator must be chosen before Numba loads, so the comparisons run in one
subprocess (``tests/runtime/crf_cuda_sim.py``) whose report the tests below read. The
simulator runs kernels as Python and types nothing, so every kernel is also compiled to
PTX for a real GPU where NVIDIA's compiler (NVVM) is installed, GPU or not. The errors
for a missing package or GPU run in this process.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.runtime.test_crf import make_image, make_probs
from tseg.runtime.crf import DenseCRF, dense_crf
from tseg.runtime.errors import TsegError

ROOT = Path(__file__).resolve().parents[2]
HAS_NUMBA_CUDA = importlib.util.find_spec("numba_cuda") is not None
needs_numba_cuda = pytest.mark.skipif(not HAS_NUMBA_CUDA,
                                      reason="numba-cuda is not installed (pip install 'tseg[cuda]')")
# Issue 21's bounds against the CPU path.
MIN_AGREEMENT = 0.999
MAX_DQ = 1e-3


@pytest.fixture(scope="module")
def simulated() -> dict:
    """The simulator's report (one subprocess for every case: each pays Numba's start)."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    # RuntimeWarnings as errors: an overflow in the simulated integer arithmetic (the hash,
    # the packed keys) would wrap silently on a GPU.
    out = subprocess.run([sys.executable, "-W", "error::RuntimeWarning", "-m",
                          "tests.runtime.crf_cuda_sim"], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@needs_numba_cuda
@pytest.mark.parametrize("case", ["16x16 default", "24x17 deeplab", "24x17 default 0 it",
                                  "24x17 matrix"])
def test_cuda_crf_matches_the_cpu_path_in_the_simulator(simulated, case):
    result = simulated[case]
    assert result["agree"] >= MIN_AGREEMENT, result
    assert result["max_dq"] <= MAX_DQ, result


@needs_numba_cuda
def test_device_lattice_is_the_cpu_lattice(simulated):
    lattices = simulated["lattices"]
    assert lattices["vertices"] == lattices["cpu_vertices"]
    assert lattices["bilateral_rows_equal"] and lattices["bilateral_neighbours_equal"]
    assert lattices["weights_max_diff"] <= 1e-6


@needs_numba_cuda
def test_cuda_results_do_not_depend_on_scheduling(simulated):
    assert simulated["scheduling_independent"]


@needs_numba_cuda
def test_cuda_stepwise_inference_and_labels(simulated):
    stepwise = simulated["stepwise"]
    assert stepwise["steps_max_dq"] == 0.0
    assert stepwise["labels_equal"] and stepwise["labels_dtype"] == "int64"
    assert stepwise["class"] == "CudaDenseCRF"  # DenseCRF(device="cuda") made it


@needs_numba_cuda
@pytest.mark.parametrize("case", ["refine_logits default", "refine_logits deeplab", "refine_logits capped"])
def test_the_runtimes_crf_params_on_cuda_give_the_cpu_labels_in_the_simulator(simulated, case):
    """CrfParams(device="cuda").refine_logits (the CRF stage of Segmenter and tseg-infer): the
    logits resized on the host, mean field on the device; the CPU path's labels, same dtype and shape."""
    result = simulated["runtime"][case]
    assert result["agree"] >= MIN_AGREEMENT and result["same_kind"], result


@needs_numba_cuda
def test_the_pipelines_finish_and_labels_from_probs_run_the_cuda_crf_in_the_simulator(simulated):
    runtime = simulated["runtime"]
    assert runtime["finish"]["agree"] >= MIN_AGREEMENT and runtime["finish"]["plain_equal"], runtime
    assert runtime["finish"]["dtype"] == "uint8"
    assert runtime["labels_from_probs"]["agree"] >= MIN_AGREEMENT
    assert runtime["labels_from_probs"]["dtype"] == "uint8"
    assert runtime["auto_for_a_cuda_model"] == "cuda"  # the kernels load (the simulator): auto takes the GPU


@needs_numba_cuda
def test_the_unary_from_logits_is_taken_on_the_device_as_the_cpu_takes_it(simulated):
    """start_from_logits (labels_from_logits and refine_logits on cuda): the bilinear taps, log-softmax
    and clip on the device equal the CPU fill's to float rounding, and logits already on the
    device (a model's bound output) need no host copy and give the same labels."""
    fill = simulated["logits_fill"]
    assert fill["upsampled"] <= 1e-5 and fill["same size"] <= 1e-5, fill
    assert fill["device_logits_equal"], fill


@needs_numba_cuda
def test_logits_left_on_the_device_reach_the_crf_without_a_host_copy(simulated):
    """Issue 21's item 4 in the simulator: the model's output as a device array through
    labels_from_logits, CrfParams.refine_logits, finish and the pipeline's stages (which ask the
    segmenter to keep it there) gives the host path's labels; its values are checked on the device
    (NaN: one line), a float64 or CPU-bound use is refused in one line."""
    handoff = simulated["device_handoff"]
    assert handoff["labels_equal"] and handoff["refine_equal"] == [True, True] and handoff["finish_equal"]
    assert handoff["nan"] == "logits: need finite values, got NaN or inf"
    assert handoff["float64"].startswith("logits: need (C, h, w) float32 logits on the GPU")
    assert "on the GPU" in handoff["on_cpu"]
    stages = handoff["stages"]
    assert stages["on_device_asked"] and stages["views_on_device"] == [True, True]
    assert stages["labels_equal"] == [True, True]
    segmenter = handoff["segmenter"]
    assert segmenter["nan"] == "model.onnx: the model gave NaN or infinite scores" and segmenter["unchecked"]
    assert segmenter["shape"].startswith("model.onnx: need (3, 5, h, w) float scores")


@pytest.mark.parametrize("device", ["gpu", "CUDA", 0])
def test_unknown_device_is_refused(device):
    with pytest.raises(TsegError, match="device: need one of 'cpu', 'cuda'") as info:
        dense_crf(make_probs(2, 8, 8), make_image(8, 8), device=device)
    assert info.value.parameter == "device"


def test_cuda_without_numba_cuda_names_the_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "numba_cuda" else real(name, *a))
    with pytest.raises(TsegError, match=r"numba-cuda.*pip install 'tseg\[cuda\]'") as info:
        DenseCRF(make_image(8, 8), device="cuda")
    assert info.value.parameter == "device"


@needs_numba_cuda
def test_cuda_without_a_gpu_says_so():
    from numba import cuda

    if cuda.is_available():
        pytest.skip("a GPU is here")
    with pytest.raises(TsegError, match=r"needs an NVIDIA GPU.*pip install 'tseg\[cuda\]'") as info:
        dense_crf(make_probs(2, 8, 8), make_image(8, 8), device="cuda")
    assert info.value.parameter == "device"


def cuda_modules_after(code: str) -> list[str]:
    """The CUDA modules (numba.cuda, numba-cuda's, cuda-python's, tseg's CUDA CRF) loaded once a
    fresh interpreter has run ``code``."""
    code += ("\nimport sys\n"
             "print(sorted(m for m in sys.modules if m.split('.')[:2] == ['numba', 'cuda']\n"
             "             or m.startswith(('numba_cuda', 'cuda', 'tseg.runtime.crf.cuda'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    return ast.literal_eval(out.strip())


def test_cpu_path_loads_no_cuda_module():
    assert cuda_modules_after(
        "import numpy as np\n"
        "from tseg.runtime.crf import dense_crf\n"
        "dense_crf(np.full((2, 8, 8), 0.5, np.float32), np.zeros((8, 8, 3), np.uint8))") == []


def _nvvm_available() -> bool:
    try:
        from numba.cuda.cudadrv.nvvm import NVVM

        NVVM()
    except Exception:  # no numba-cuda, no CUDA toolkit or wheel with libnvvm
        return False
    return True


def _kernel_signatures() -> dict:
    """Each kernel with the argument types its callers pass."""
    from numba import types as t

    from tseg.runtime.crf.cuda import embed, kernels, lattice, scan, segments, table

    f32, i32, i64 = t.float32, t.int32, t.int64

    def a(dtype, ndim):
        return t.Array(dtype, ndim, "C")

    return {
        embed.embed_points: (a(t.uint8, 3), i64, f32, f32, a(f32, 1), a(i64, 1), a(i64, 2),
                             a(f32, 1), a(i64, 2)),
        table.insert_entries: (a(i32, 1), a(i64, 2), a(i32, 1)),
        table.mark_first: (a(i32, 1),) * 3,
        table.number_entries: (a(i32, 1),) * 5,
        table.find_neighbours: (a(i32, 1), a(i64, 2), a(i32, 1), a(i32, 1), a(i64, 3), a(i32, 3)),
        scan._tile_totals: (a(i32, 1),) * 2,
        scan._scan_totals: (a(i32, 1),) * 2,
        scan._tile_scan: (a(i32, 1),) * 3,
        scan._fill: (a(i32, 1), i32),
        segments.count_entries: (a(i32, 1),) * 2,
        segments.fill_segments: (a(i32, 1),) * 4,
        segments.sort_segments: (a(i32, 1),) * 2,
        kernels.base_from_probs: (a(f32, 2), f32, a(f32, 2)),
        kernels.base_from_unary: (a(f32, 2),) * 2,
        kernels.pixel_pass: (a(f32, 2), a(i32, 2), a(f32, 1), a(f32, 2), a(i32, 2), a(f32, 1),
                             a(f32, 2), t.boolean, a(f32, 2)),
        kernels.argmax_labels: (a(f32, 2), a(t.int64, 1)),
        kernels.splat: (a(f32, 2), a(i32, 1), a(i32, 1), a(f32, 1), a(f32, 1), a(f32, 2)),
        kernels.compat: (a(f32, 2),) * 3,
        kernels.blur_axis: (a(f32, 2), a(f32, 2), a(i32, 3), i64),
        lattice._symmetric_weights: (a(f32, 1), a(i32, 2), a(f32, 2), f32, a(f32, 1)),
    }


@needs_numba_cuda
def test_every_kernel_compiles_for_a_gpu_and_the_embedding_fuses_no_multiply_add(monkeypatch):
    if not _nvvm_available():
        pytest.skip("no NVVM (CUDA toolkit or nvidia-cuda-nvcc wheel) to compile with")
    from numba import cuda
    from numba import types as t
    from numba.cuda import dispatcher

    from tseg.runtime.crf.cuda import kernels

    # Device functions take the compute capability from the current GPU: there is none.
    monkeypatch.setattr(dispatcher, "get_current_device",
                        lambda: SimpleNamespace(compute_capability=(9, 0)))
    signatures = [*_kernel_signatures().items(),  # the runtime's uint8 labels (labels_from_logits)
                  (kernels.argmax_labels, (t.Array(t.float32, 2, "C"), t.Array(t.uint8, 1, "C")))]
    for kernel, args in signatures:
        ptx, _ = cuda.compile_ptx(kernel.py_func, args, cc=(9, 0))
        if kernel.py_func.__name__ == "embed_points":
            # One rounding per product, as the reference: a fused multiply-add would
            # move points across simplex boundaries.
            assert "fma.rn.f32" not in ptx and "mul.rn.f32" in ptx
