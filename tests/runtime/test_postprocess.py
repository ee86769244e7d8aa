"""upsample_labels / upsample_probs against the plain reference (labels_from_scores, resize_scores).

upsample_labels may differ from the reference only where two classes tie to float rounding:
where the reference's top two values are within 1e-5 of the logits' scale.
"""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.runtime.scores import argmax_classes, labels_from_scores, resize_scores, softmax
from tseg.runtime.segment import upsample
from tseg.runtime.segment.upsample import upsample_labels, upsample_probs

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
TIE = 1e-5


def smooth_logits(classes: int, size: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """(C, h, w) float32 logits of a few regions per class, like a segmentation head's output."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(classes, max(1, size[0] // 8), max(1, size[1] // 8))).astype(np.float32) * 3
    return np.ascontiguousarray(resize_scores(coarse, size))


def assert_same_labels_but_ties(logits: np.ndarray, size: tuple[int, int]) -> None:
    """Equal to the reference wherever the reference's top two values are more than a tie apart."""
    got = upsample_labels(logits, size)
    reference = labels_from_scores(logits, size)
    assert got.shape == reference.shape == tuple(size)
    assert got.dtype == reference.dtype
    differ = got != reference
    if differ.any():
        scores = resize_scores(logits, size)
        top_two = np.sort(scores[:, differ], axis=0)[-2:]
        scale = max(float(np.abs(logits).max()), 1e-30)
        gaps = (top_two[1] - top_two[0]) / scale
        assert gaps.max() <= TIE, f"{differ.sum()} labels differ, gap up to {gaps.max():.3g} of the scale"
        # And the label given is one of the tied classes, not any class.
        chosen = np.take_along_axis(scores[:, differ], got[differ][None].astype(np.int64), axis=0)[0]
        assert ((top_two[1] - chosen) / scale).max() <= TIE


@st.composite
def logits_and_size(draw):
    """(C, h, w) float32 logits and an output (H, W): up- and downsizing, equal sizes, 1-pixel sides.

    Values come either from a few levels (exact ties everywhere) or from a wide float range.
    """
    classes = draw(st.integers(1, 6))
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    elements = draw(st.sampled_from([
        st.sampled_from([-2.0, 0.0, 0.5, 1.0, 3.0]),
        st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False),
    ]))
    logits = draw(arrays(np.float32, (classes, height, width), elements=elements))
    out_h = draw(st.one_of(st.just(height), st.just(1), st.integers(1, 40)))
    out_w = draw(st.one_of(st.just(width), st.just(1), st.integers(1, 40)))
    return logits, (out_h, out_w)


@SETTINGS
@given(logits_and_size())
def test_upsample_labels_equals_the_reference_up_to_float_ties(case):
    logits, size = case
    assert_same_labels_but_ties(logits, size)


@pytest.mark.parametrize(
    ("classes", "low", "size"),
    [
        (12, (64, 64), (128, 128)),  # the runtime's usual 2x
        (12, (64, 64), (300, 170)),  # odd factors, different per axis
        (5, (40, 50), (17, 23)),  # downsizing: the image is smaller than the model's output
        (5, (40, 50), (40, 120)),  # one axis unchanged
        (4, (1, 30), (1, 70)),  # 1-pixel sides
        (4, (30, 1), (70, 1)),
        (3, (1, 1), (5, 9)),
        (3, (16, 16), (1, 1)),
    ],
)
def test_upsample_labels_on_smooth_logits_equals_the_reference(classes, low, size):
    logits = smooth_logits(classes, low)
    np.testing.assert_array_equal(upsample_labels(logits, size), labels_from_scores(logits, size))


def test_small_boundary_chunks_give_the_same_labels(monkeypatch):
    logits = smooth_logits(12, (48, 48), seed=3)
    expected = upsample_labels(logits, (200, 150))
    monkeypatch.setattr(upsample, "BOUNDARY_ELEMENTS", 7 * 12)  # 7 pixels a chunk
    np.testing.assert_array_equal(upsample_labels(logits, (200, 150)), expected)
    np.testing.assert_array_equal(expected, labels_from_scores(logits, (200, 150)))


def test_no_resize_is_the_plain_argmax():
    logits = smooth_logits(7, (33, 21), seed=1)
    logits[:, 0, 0] = 1.0  # an exact tie: the first class wins, as in argmax
    np.testing.assert_array_equal(upsample_labels(logits, (33, 21)), logits.argmax(axis=0))
    assert upsample_labels(logits, (33, 21))[0, 0] == 0


def test_one_class_is_all_zeros():
    labels = upsample_labels(np.random.default_rng(0).normal(size=(1, 5, 6)).astype(np.float32), (11, 13))
    assert labels.shape == (11, 13) and labels.dtype == np.uint8 and not labels.any()


def test_the_most_classes_a_model_may_have_and_one_more():
    logits = smooth_logits(MAX_CLASSES, (16, 16), seed=2)
    logits[MAX_CLASSES - 1, :8] += 100.0  # the last class wins the top half
    labels = upsample_labels(logits, (40, 37))
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, labels_from_scores(logits, (40, 37)))
    assert labels.max() == MAX_CLASSES - 1
    with pytest.raises(TsegError, match=f"labels hold up to {MAX_CLASSES} classes, got {MAX_CLASSES + 1}"):
        upsample_labels(smooth_logits(MAX_CLASSES + 1, (4, 4), seed=2), (8, 8))


def test_non_contiguous_and_float64_logits():
    logits = smooth_logits(6, (20, 30), seed=4)
    strided = np.asfortranarray(logits)
    wide = logits.astype(np.float64)
    expected = labels_from_scores(logits, (45, 61))
    np.testing.assert_array_equal(upsample_labels(strided, (45, 61)), expected)
    np.testing.assert_array_equal(upsample_labels(wide, (45, 61)), expected)


def test_argmax_classes_is_argmax_with_first_index_on_ties():
    rng = np.random.default_rng(5)
    values = rng.integers(0, 3, size=(9, 17, 13)).astype(np.float32)  # ties everywhere
    np.testing.assert_array_equal(argmax_classes(values), values.argmax(axis=0))
    flat = values.reshape(9, -1)
    np.testing.assert_array_equal(argmax_classes(flat), flat.argmax(axis=0))


def test_memory_stays_at_the_output_size_not_classes_times_it():
    classes, size = 12, (1000, 1000)
    logits = smooth_logits(classes, (64, 64), seed=6)
    tracemalloc.start()
    try:
        upsample_labels(logits, size)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_scores = classes * size[0] * size[1] * 4  # what labels_from_scores holds: 48 MB
    assert peak < full_scores / 2, f"peak {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize(
    ("logits", "size", "message"),
    [
        (np.zeros((4, 5)), (3, 3), "need (C, h, w) logits"),
        (np.zeros((0, 5, 5)), (3, 3), "need (C, h, w) logits"),
        (np.zeros((2, 5, 5), dtype=np.int64), (3, 3), "need float logits"),
        ([[[1.0]]], (3, 3), "need (C, h, w) logits"),
        (np.zeros((2, 5, 5)), (0, 3), "output size"),
        (np.zeros((2, 5, 5)), (3,), "output size"),
        (np.zeros((2, 5, 5)), (2.5, 3), "output size"),
        (np.zeros((2, 5, 5)), (True, 3), "output size"),
        (np.zeros((2, 5, 5)), "ab", "output size"),
    ],
)
def test_bad_arguments_are_one_line_errors(logits, size, message):
    with pytest.raises(TsegError, match=message.replace("(", r"\(").replace(")", r"\)")) as err:
        upsample_labels(logits, size)
    assert "\n" not in str(err.value)


def test_nan_logits_are_refused():
    logits = smooth_logits(3, (8, 8))
    logits[1, 2, 3] = np.nan
    with pytest.raises(TsegError, match="NaN"):
        upsample_labels(logits, (16, 16))


def test_upsample_probs_is_the_softmax_of_the_resized_logits():
    logits = smooth_logits(5, (12, 10), seed=7)
    probs = upsample_probs(logits, (30, 21))
    assert probs.shape == (5, 30, 21) and probs.dtype == np.float32
    np.testing.assert_allclose(probs, softmax(resize_scores(logits, (30, 21))), rtol=0, atol=0)
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=0), labels_from_scores(logits, (30, 21)))
    with pytest.raises(TsegError, match="output size"):
        upsample_probs(logits, (0, 4))


def test_postprocess_imports_neither_numba_nor_torch():
    code = "import sys, tseg.runtime.segment.upsample; print(sorted({'numba', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("value", [np.inf, -np.inf])
def test_a_pixel_whose_top_score_is_infinite_is_refused(value):
    logits = smooth_logits(3, (8, 8))
    logits[:, 2, 3] = value if value < 0 else logits[:, 2, 3]
    logits[0, 2, 3] = value if value > 0 else logits[0, 2, 3]
    for size in [(8, 8), (16, 16)]:
        with pytest.raises(TsegError, match="NaN or infinite"):
            upsample_labels(logits, size)
