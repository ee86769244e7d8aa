"""On more threads than the splat tasks can use, the pixel pass runs in two phases
(runtime/crf/split.py): it must give the fused pass's results bit for bit, for banded
accumulators and alias rows, any size, class count and thread count."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.runtime.test_crf_aliases import every_lattice_aliased  # noqa: F401  (a fixture)
from tests.runtime.test_crf_threads import DEEPLAB, scene
from tseg.runtime.crf import dense, dense_crf, labels_from_logits, labels_from_probs, split
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import resize_scores, softmax


@pytest.fixture
def pieces_splatted(monkeypatch):
    """The pieces the second phase splatted, per call of its kernel."""
    seen = []
    kernel = split.splat_pieces

    def spy(*args):
        seen.append(args[-1] - args[-2])
        return kernel(*args)

    monkeypatch.setattr(split, "splat_pieces", spy)
    return seen


def _inputs(height, width, classes, seed=0):
    image, logits = scene(height, width, classes, seed=seed)
    return image, logits, softmax(resize_scores(logits, (height, width)))


def test_the_two_phase_pass_is_for_more_threads_than_the_tasks_use():
    assert not split.wanted(4, 2)
    assert not split.wanted(4, split.SPLIT_THREADS_PER_TASK * 4)
    assert split.wanted(4, split.SPLIT_THREADS_PER_TASK * 4 + 1)
    assert split.wanted(1, 3)


@pytest.mark.parametrize("crf_settings", [{}, DEEPLAB], ids=["default", "deeplab"])
def test_two_phases_give_the_fused_passs_q_and_labels(crf_settings, pieces_splatted):
    image, logits, probs = _inputs(96, 120, 12)
    dense._gaussian_cache.clear()
    fused = dense_crf(probs, image, iterations=3, threads=1, **crf_settings)
    labels = labels_from_logits(logits, image, iterations=3, threads=1, **crf_settings)
    assert not pieces_splatted
    for threads in (9, 16, 40):
        np.testing.assert_array_equal(dense_crf(probs, image, iterations=3, threads=threads,
                                                **crf_settings), fused)
        np.testing.assert_array_equal(labels_from_logits(logits, image, iterations=3,
                                                         threads=threads, **crf_settings), labels)
    assert pieces_splatted  # the second phase ran


@pytest.mark.usefixtures("every_lattice_aliased")
@pytest.mark.parametrize("classes", [5, 21])  # one group of lanes, or two (AVX-512)
def test_two_phases_give_the_fused_passs_q_through_alias_rows(classes, pieces_splatted):
    image, _, probs = _inputs(61, 45, classes, seed=classes)
    fused = dense_crf(probs, image, iterations=4, threads=2, **DEEPLAB)
    for threads in (9, 33):
        np.testing.assert_array_equal(dense_crf(probs, image, iterations=4, threads=threads,
                                                **DEEPLAB), fused)
    assert pieces_splatted


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(height=st.integers(1, 70), width=st.integers(1, 70), classes=st.integers(2, 20),
       threads=st.integers(3, 64), iterations=st.integers(0, 3), seed=st.integers(0, 9))
def test_any_image_gives_the_same_q_on_one_thread_and_many(height, width, classes, threads,
                                                            iterations, seed):
    """Tiny images have one task, so three threads already split; pieces may then
    outnumber a task's rows."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    probs = softmax(rng.normal(0, 2, (classes, height, width)).astype(np.float32))
    one = dense_crf(probs, image, iterations=iterations, threads=1)
    np.testing.assert_array_equal(dense_crf(probs, image, iterations=iterations,
                                            threads=threads), one)
    np.testing.assert_array_equal(labels_from_probs(probs, image, iterations=iterations,
                                                    threads=threads), one.argmax(0))


def test_bad_probabilities_are_refused_by_the_first_of_two_phases():
    image, _, probs = _inputs(40, 50, 6)
    probs[3, 39, 49] = 1.5
    with pytest.raises(TsegError, match="probs"):
        dense_crf(probs, image, threads=16)
