"""Property tests: the runtime's bilinear resize and argmax against PyTorch's ``interpolate``.

Training validates with ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
and the runtime with :func:`resize_scores` in NumPy; the two must agree on every size, including
downsampling, equal sizes and 1-pixel axes, or the runtime's mIoU is not the training-time one.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tseg.runtime.scores import labels_from_scores, resize_scores

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scores_and_size(draw, *, elements=None):
    """(C, h, w) float32 scores and a target (H, W): C 1..5, h, w 1..40, H, W 1..80."""
    channels = draw(st.integers(1, 5))
    height, width = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    if elements is None:
        elements = st.floats(-1e3, 1e3, width=32, allow_nan=False, allow_infinity=False)
    scores = draw(arrays(np.float32, (channels, height, width), elements=elements))
    # Equal sizes and 1-pixel axes are drawn often on purpose: they are the edge cases.
    out_h = draw(st.one_of(st.just(height), st.just(1), st.integers(1, 80)))
    out_w = draw(st.one_of(st.just(width), st.just(1), st.integers(1, 80)))
    return scores, (out_h, out_w)


def torch_bilinear(scores: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """PyTorch's reference: (C, h, w) -> (C, H, W), bilinear, align_corners=False."""
    with torch.no_grad():
        out = torch.nn.functional.interpolate(
            torch.from_numpy(scores)[None], size=size, mode="bilinear", align_corners=False
        )
    return out[0].numpy()


@PROPERTY_SETTINGS
@given(scores_and_size())
def test_resize_scores_matches_torch_interpolate(case):
    scores, size = case
    expected = torch_bilinear(scores, size)
    got = resize_scores(scores, size)
    assert got.shape == (scores.shape[0], *size)
    assert got.dtype == np.float32
    scale = float(np.abs(scores).max(initial=0.0))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5 * max(scale, 1.0))


@PROPERTY_SETTINGS
@given(scores_and_size())
def test_labels_from_scores_is_argmax_of_torch_interpolate(case):
    scores, size = case
    expected = torch_bilinear(scores, size)
    labels = labels_from_scores(scores, size)
    assert labels.shape == size and labels.dtype == np.uint8
    # Where the two best classes are within float noise of each other, either answer is right.
    top2 = np.sort(expected, axis=0)[-2:] if expected.shape[0] > 1 else None
    if top2 is None:
        assert not labels.any()
        return
    scale = max(float(np.abs(scores).max(initial=0.0)), 1.0)
    decided = (top2[1] - top2[0]) >= 1e-5 * scale
    np.testing.assert_array_equal(labels[decided], expected.argmax(axis=0)[decided])
    # On the undecided pixels the chosen class must still be one of the (near-)best.
    chosen = np.take_along_axis(expected, labels[None].astype(np.int64), axis=0)[0]
    assert np.all(chosen >= top2[1] - 1e-5 * scale)


@PROPERTY_SETTINGS
@given(scores_and_size(elements=st.integers(-3, 3).map(np.float32)))
def test_labels_from_scores_is_argmax_of_resize_scores_even_with_ties(case):
    """Few distinct values: exact ties everywhere; the first best class wins, like NumPy's argmax."""
    scores, size = case
    np.testing.assert_array_equal(labels_from_scores(scores, size), resize_scores(scores, size).argmax(axis=0))
    np.testing.assert_array_equal(labels_from_scores(scores), scores.argmax(axis=0))


def test_labels_from_scores_uses_uint16_beyond_256_classes():
    scores = np.zeros((300, 2, 3), np.float32)
    scores[299, 1, 2] = 1.0
    labels = labels_from_scores(scores, (4, 6))
    assert labels.dtype == np.uint16
    assert labels.max() == 299
