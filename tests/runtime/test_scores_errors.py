"""The score helpers (runtime/scores.py) answer bad arrays and sizes with a TsegError naming the parameter."""

import numpy as np
import pytest

from tseg.runtime.errors import TsegError
from tseg.runtime.scores import argmax_classes, labels_from_scores, resize_scores

SCORES = np.zeros((2, 3, 3), np.float32)


@pytest.mark.parametrize(
    "call, parameter",
    [
        (lambda: argmax_classes(np.zeros((0, 3, 3))), "scores"),
        (lambda: argmax_classes(np.zeros((2, 0, 3))), "scores"),
        (lambda: resize_scores(np.zeros((2, 3)), (4, 4)), "scores"),
        (lambda: resize_scores("logits", (4, 4)), "scores"),
        (lambda: resize_scores(SCORES, 5), "size"),
        (lambda: resize_scores(SCORES, (4, "x")), "size"),
        (lambda: labels_from_scores(SCORES, (0, 4)), "size"),
    ],
)
def test_bad_scores_or_sizes_are_a_tseg_error_naming_the_parameter(call, parameter):
    with pytest.raises(TsegError, match=f"^{parameter}: ") as caught:
        call()
    assert caught.value.parameter == parameter


def test_good_input_is_unchanged():
    scores = np.random.default_rng(0).normal(size=(3, 4, 5)).astype(np.float32)
    np.testing.assert_array_equal(argmax_classes(scores), scores.argmax(0))
    assert resize_scores(scores, (8, 10)).shape == (3, 8, 10)
    assert labels_from_scores(scores, [8, 10]).shape == (8, 10)
