"""Dense CRF parity with pydensecrf: stored references always, live ones when installed.

The stored cases (tests/runtime/crf_reference/*.npz, written by
benchmarks/make_crf_reference.py) hold their inputs, so they need neither pydensecrf2
nor matplotlib. The live cases run pydensecrf2 on 512 x 512 photographs when it is
importable (``pip install pydensecrf2``) and are skipped otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from tseg.runtime.crf import DenseCRF, unary_from_labels, unary_from_probs

REFERENCE_DIR = Path(__file__).parent / "crf_reference"
GENERATOR = Path(__file__).parents[2] / "benchmarks" / "make_crf_reference.py"
MIN_AGREEMENT = 0.999
MAX_ABS_DQ = 1e-3


def run_tseg(image, data, settings, iterations, num_classes, hard_labels):
    if hard_labels:
        unary = unary_from_labels(data, num_classes=num_classes, gt_prob=0.7)
    else:
        unary = unary_from_probs(data)
    return DenseCRF(image, **settings).inference(unary, iterations=iterations)


def assert_parity(q, q_ref):
    assert q.shape == q_ref.shape and q.dtype == np.float32
    agreement = float((q.argmax(0) == q_ref.argmax(0)).mean())
    max_dq = float(np.abs(q - q_ref).max())
    assert agreement >= MIN_AGREEMENT and max_dq <= MAX_ABS_DQ, (
        f"labels agree on {agreement:.5f} (need >= {MIN_AGREEMENT}), "
        f"max |dQ| = {max_dq:.2e} (need <= {MAX_ABS_DQ})")


def _stored_cases():
    return sorted(REFERENCE_DIR.glob("*.npz"))


def test_stored_references_exist():
    assert len(_stored_cases()) >= 6


@pytest.mark.parametrize("path", _stored_cases(), ids=lambda p: p.stem)
def test_matches_stored_reference(path):
    with np.load(path) as ref:
        settings = {key[len("setting_"):]: (ref[key].item() if ref[key].ndim == 0 else ref[key])
                    for key in ref.files if key.startswith("setting_")}
        q = run_tseg(ref["image"], ref["data"], settings, int(ref["iterations"]),
                     int(ref["num_classes"]), bool(ref["hard_labels"]))
        assert_parity(q, ref["q"])


@functools.cache
def _generator():
    """benchmarks/make_crf_reference.py, imported by path (benchmarks is no package)."""
    name = "make_crf_reference"
    spec = importlib.util.spec_from_file_location(name, GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _live_cases():
    if not GENERATOR.exists():
        return []
    return _generator().LIVE


@pytest.mark.parametrize("case", _live_cases(), ids=lambda c: c.name)
def test_matches_pydensecrf_live(case):
    gen = _generator()
    image, data, settings = gen.make_inputs(case)
    unary = gen.reference_unary(data, case.num_classes, case.hard_labels)
    q_ref = gen.reference_q(image, unary, settings, case.iterations)
    q = run_tseg(image, data, settings, case.iterations, case.num_classes, case.hard_labels)
    assert_parity(q, q_ref)
    # The unaries are realistic: the CRF really changes labels on these inputs.
    start = unary.reshape(q.shape).argmin(0)
    assert (q.argmax(0) != start).mean() > 0.005
