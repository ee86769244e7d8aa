"""Big lattices splat through alias rows with first-touch bits (runtime/crf/aliases.py):
the same sums as the banded accumulators of small ones, whatever the threads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.test_crf_threads import DEEPLAB, scene
from tseg.runtime.crf import DenseCRF, aliases, dense, dense_crf, meanfield, simd
from tseg.runtime.scores import argmax_classes, resize_scores, softmax


@pytest.fixture
def every_lattice_aliased(monkeypatch):
    """Alias rows for lattices of any size (the cached Gaussian lattices rebuilt)."""
    dense._gaussian_cache.clear()
    monkeypatch.setattr(aliases, "ALIAS_VERTICES", 0)
    monkeypatch.setattr(aliases, "ALIAS_PIXELS_PER_VERTEX", 2**20)
    yield
    dense._gaussian_cache.clear()


def _banded_q(probs, image, iterations, **settings):
    dense._gaussian_cache.clear()
    try:
        return dense_crf(probs, image, iterations=iterations, threads=2, **settings)
    finally:
        dense._gaussian_cache.clear()


@pytest.mark.parametrize("classes, height, width, settings", [
    (3, 37, 53, {}),
    (12, 61, 45, DEEPLAB),
    (21, 48, 40, {"bilateral_compat": 5.0}),  # 32 lanes with AVX-512
    (4, 33, 31, {"bilateral_compat": [[0, 1, 2, 3], [1, 0, 1, 2], [2, 1, 0, 1], [3, 2, 1, 0]],
                 "gaussian_compat": [1.0, 2.0, 3.0, 4.0]}),
])
def test_alias_rows_give_the_banded_accumulators_q_on_any_thread_count(
        classes, height, width, settings, every_lattice_aliased, monkeypatch):
    image, logits = scene(height, width, classes, seed=classes)
    probs = softmax(resize_scores(logits, (height, width)))
    got = {t: dense_crf(probs, image, iterations=5, threads=t, **settings) for t in (1, 2, 3)}
    np.testing.assert_array_equal(got[2], got[1])
    np.testing.assert_array_equal(got[3], got[1])
    monkeypatch.setattr(aliases, "ALIAS_VERTICES", 2**62)
    banded = _banded_q(probs, image, 5, **settings)
    # The gain is applied in the blur's first axis instead of before it: float rounding.
    assert np.abs(got[1] - banded).max() <= 1e-5
    np.testing.assert_array_equal(argmax_classes(got[1]), argmax_classes(banded))


def _targets(lat, bounds):
    """Per task, its corners' rows without the first-touch bits, and those bits."""
    flat = lat.offsets.reshape(-1)
    dp1 = lat.offsets.shape[1]
    for t in range(len(bounds) - 1):
        part = flat[bounds[t] * dp1:bounds[t + 1] * dp1]
        yield t, part & 0x7FFFFFFF, part < 0


@pytest.mark.parametrize("settings", [{}, DEEPLAB], ids=["default", "deeplab"])
def test_every_row_has_one_writer_and_its_first_splat_stores(settings, every_lattice_aliased):
    image, _ = scene(96, 80, 5)
    bounds = meanfield.task_bounds(96 * 80)
    assert len(bounds) > 2  # several tasks, so rows are shared
    with DenseCRF(image, **settings) as crf:
        for lat in (crf.gaussian, crf.bilateral):
            aliases, m = lat.aliases, lat.num_vertices
            assert aliases is not None and aliases.shared.size > 0
            writers = np.zeros(aliases.rows, np.int64)
            for _, rows, first in _targets(lat, bounds):
                unique, where = np.unique(rows, return_index=True)
                writers[unique] += 1
                assert first.sum() == unique.size and first[where].all()  # the first, once
            # Every vertex row and alias row has exactly one task splatting into it;
            # row 0 (a missing blur neighbour) none.
            assert writers[0] == 0 and (writers[1:] == 1).all()
            assert (aliases.shared >= 1).all() and (aliases.shared <= m).all()
            assert aliases.starts[0] == m + 1 and aliases.starts[-1] == aliases.rows
            assert (np.diff(aliases.starts) >= 1).all()


def test_small_or_sparse_lattices_keep_banded_accumulators():
    dense._gaussian_cache.clear()
    image, _ = scene(40, 40, 3)
    with DenseCRF(image) as crf:
        assert crf.gaussian.aliases is None and crf.bilateral.aliases is None
        assert (crf.bilateral.offsets >= 0).all()  # no first-touch bits
    assert simd.FIRST_TOUCH == -(2**31)
    assert aliases.wants_aliases(300_000, 262_144)  # DeepLab's at 512 x 512
    assert not aliases.wants_aliases(135_288, 1024 * 1024)  # the default Gaussian at 1 Mpixel
    assert not aliases.wants_aliases(60_000, 50_000)  # in the L2 cache


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(height=st.integers(1, 70), width=st.integers(1, 70), classes=st.integers(2, 20),
       deeplab=st.booleans(), seed=st.integers(0, 2**16))
def test_any_size_and_class_count_give_the_accumulators_labels(height, width, classes, deeplab, seed,
                                                                  monkeypatch):
    """Odd sizes (one task below 1,024 pixels, four above), 2-20 classes: with every lattice on
    alias rows, Q on 1 and 3 threads bit for bit, and within float rounding of the accumulators'."""
    settings_ = DEEPLAB if deeplab else {}
    image, logits = scene(max(height, 4), max(width, 4), classes, seed=seed)
    image = np.ascontiguousarray(image[:height, :width])
    probs = softmax(resize_scores(logits, (height, width)))
    dense._gaussian_cache.clear()
    monkeypatch.setattr(aliases, "ALIAS_VERTICES", 0)
    monkeypatch.setattr(aliases, "ALIAS_PIXELS_PER_VERTEX", 2**20)
    one, three = (dense_crf(probs, image, iterations=3, threads=t, **settings_) for t in (1, 3))
    np.testing.assert_array_equal(one, three)
    monkeypatch.setattr(aliases, "ALIAS_VERTICES", 2**62)
    banded = _banded_q(probs, image, 3, **settings_)
    assert np.abs(one - banded).max() <= 1e-5


def test_rows_no_pixel_splats_read_as_zeros_whatever_the_pool_held(every_lattice_aliased, monkeypatch):
    """Vertices that only the embedding's zero padding points reach (images whose pixel count is
    not a multiple of its block) are in the lattice but never splatted: their rows must read as
    zeros, not as whatever the pooled buffer held before (here NaN bytes)."""
    from tseg.runtime.crf import workspace

    workspace.clear()
    monkeypatch.setattr(workspace, "_take", lambda nbytes: np.full(nbytes, 0xFF, np.uint8))  # NaN
    image, logits = scene(5, 7, 3, seed=1)
    probs = softmax(resize_scores(logits, (5, 7)))
    got = dense_crf(probs, image, iterations=3, threads=2, **DEEPLAB)
    monkeypatch.setattr(aliases, "ALIAS_VERTICES", 2**62)
    assert np.isfinite(got).all()
    assert np.abs(got - _banded_q(probs, image, 3, **DEEPLAB)).max() <= 1e-5
