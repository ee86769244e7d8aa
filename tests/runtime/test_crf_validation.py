"""Dense CRF argument checks: each bad argument gives one line that says what was needed,
including probabilities that only the first mean-field pass reads."""

from __future__ import annotations

import numpy as np
import pytest

from tests.runtime.test_crf import make_image, make_probs
from tseg.runtime.crf import (
    CrfTypeError,
    DenseCRF,
    dense_crf,
    dense_crf_labels,
    labels_from_probs,
)
from tseg.runtime.errors import TsegError


@pytest.mark.parametrize("kwargs, error, message", [
    ({"probs": make_probs()[0]}, TsegError, "probs: need shape (C, H, W), got (24, 32)"),
    ({"probs": make_probs(3, 24, 30)}, TsegError, "need shape (C, 24, 32) to match"),
    ({"probs": make_probs().astype(np.int32)}, CrfTypeError, "need a float dtype"),
    ({"probs": make_probs() * 2}, TsegError, "need values in [0, 1], got [0"),
    ({"probs": np.full((2, 24, 32), np.nan, np.float32)}, TsegError, "need finite values"),
    ({"probs": [[[0.5]]]}, CrfTypeError, "need a float (C, H, W) numpy array, got list"),
    ({"image": make_image().astype(np.float32)}, CrfTypeError, "image: need an (H, W, 3) uint8 image with H, W >= 1,"
                                                              " got shape (24, 32, 3) float32"),
    ({"image": make_image()[..., :2]}, TsegError, "image: need an (H, W, 3) uint8 image with H, W >= 1, got shape"),
    ({"iterations": -1}, TsegError, "iterations: need an int >= 0, got -1"),
    ({"iterations": 2.0}, CrfTypeError, "iterations: need an int >= 0, got float"),
    ({"gaussian_sxy": 0.0}, TsegError, "gaussian_sxy: need a finite value > 0 (from"),
    ({"gaussian_sxy": 1e-40}, TsegError, "gaussian_sxy: need a finite value > 0 (from"),
    ({"gaussian_sxy": 1e-9}, TsegError, "CRF features span too wide a range"),
    ({"bilateral_sxy": 10**400}, TsegError, "bilateral_sxy: need a finite value > 0"),
    ({"gaussian_compat": 1e38}, TsegError, "gaussian_compat: need a value in [-1e+06, 1e+06]"),
    ({"bilateral_compat": np.full(3, -1e7)}, TsegError, "need values in [-1e+06, 1e+06]"),
    ({"bilateral_compat": np.ones(3, bool)}, CrfTypeError, "need real numbers, got bool"),
    ({"bilateral_compat": [1.0, "x", 2.0]}, CrfTypeError, "need real numbers"),
    ({"gaussian_sxy": True}, CrfTypeError, "gaussian_sxy: need a positive float, got bool"),
    ({"bilateral_srgb": float("inf")}, TsegError, "bilateral_srgb: need a finite value > 0"),
    ({"bilateral_compat": np.ones(4)}, TsegError, "need shape (3,) for 3 classes, got (4,)"),
    ({"gaussian_compat": np.ones((3, 2))}, TsegError, "need a float, a (C,) or a (C, C)"),
    ({"gaussian_compat": float("nan")}, TsegError, "gaussian_compat: need a finite value"),
    ({"gaussian_compat": "potts"}, CrfTypeError, "need a float, a (C,) or a (C, C) array"),
    ({"threads": 0}, TsegError, "threads: need an int >= 1 or None, got 0"),
])
def test_bad_arguments_say_what_was_needed(kwargs, error, message):
    args = {"probs": make_probs(), "image": make_image(), **kwargs}
    with pytest.raises(error) as info:
        dense_crf(args.pop("probs"), args.pop("image"), **args)
    assert message in str(info.value)


@pytest.mark.parametrize("bad, message", [(-1e-7, "need values in [0, 1], got [-1e-07"),
                                          (1.0001, "need values in [0, 1], got [0"),
                                          (np.nan, "need finite values"),
                                          (np.inf, "need finite values")])
@pytest.mark.parametrize("where", [(0, 0, 0), (2, 33, 40), (1, 66, 70)])  # 4 tasks: first, inside, last
@pytest.mark.parametrize("function", [dense_crf, labels_from_probs])
@pytest.mark.parametrize("iterations", [0, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_bad_probability_anywhere_is_refused(bad, message, where, function, iterations, dtype):
    """The first pixel pass checks the probabilities as it reads them (no pass before):
    one bad value anywhere, in any pass that reads them, gives check_probs' error."""
    probs = make_probs(3, 67, 71).astype(dtype)
    probs[where] = bad
    with pytest.raises(TsegError) as info:
        function(probs, make_image(67, 71), iterations=iterations, threads=2)
    assert message in str(info.value)


def test_a_state_whose_probabilities_were_refused_is_closed():
    probs = make_probs(3, 37, 53)
    probs[1, 5, 5] = 2.0
    with DenseCRF(make_image(37, 53)) as crf:
        state = crf._start(probs.shape, probs=probs)
        with pytest.raises(TsegError, match="need values in"):
            state.step(1)
        with pytest.raises(TsegError, match="closed"):
            state.step(1)


@pytest.mark.parametrize("kwargs", [{"probs": [[[0.5]]]}, {"iterations": "5"},
                                    {"image": make_image().tolist()}])
def test_type_errors_are_type_and_tseg_errors(kwargs):
    """A wrong type is a TypeError for Python callers and one line for a CLI."""
    import click
    from click.testing import CliRunner

    from tseg.runtime.cli_errors import one_line_errors

    args = {"probs": make_probs(), "image": make_image(), **kwargs}
    with pytest.raises(TypeError) as info:
        dense_crf(args["probs"], args["image"], iterations=args.get("iterations", 5))
    assert isinstance(info.value, TsegError)

    @click.command()
    @one_line_errors
    def refine() -> None:
        dense_crf(args["probs"], args["image"], iterations=args.get("iterations", 5))

    result = CliRunner().invoke(refine, [])
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ")
    assert str(info.value) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("kwargs, message", [
    ({"labels": np.full((24, 32), 3)}, "labels: need values in [0, 3), got 3"),
    ({"labels": np.full((24, 32), 255), "unknown_label": 254}, "[0, 3) or 254 (unknown)"),
    ({"num_classes": 1}, "num_classes: need >= 2, got 1"),
    ({"gt_prob": 1.0}, "gt_prob: need a value in (0, 1), got 1.0"),
    ({"labels": np.zeros((1, 24, 32), np.uint8)}, "labels: need shape (H, W)"),
])
def test_bad_labels_say_what_was_needed(kwargs, message):
    args = {"labels": np.zeros((24, 32), np.uint8), "num_classes": 3, **kwargs}
    with pytest.raises(TsegError) as info:
        dense_crf_labels(args.pop("labels"), make_image(), **args)
    assert message in str(info.value)


def test_unary_must_match_the_crf_image():
    crf = DenseCRF(make_image())
    with pytest.raises(TsegError, match=r"unary: need shape \(C, 24, 32\) to match"):
        crf.inference(np.zeros((2, 24, 31), np.float32))
    with pytest.raises(TsegError, match="unary: need finite values"):
        crf.inference(np.full((2, 24, 32), np.inf, np.float32))
