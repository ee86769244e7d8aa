"""Property-based tests of the dense CRF's argument handling (hypothesis).

Any bad argument (shape, dtype, NaN/inf, non-positive or absurd widths, wrong compat
shapes, bools or strings where numbers belong, empty dimensions) raises a one-line
TsegError, never another exception; any valid small input gives (C, H, W) float32
probabilities; a valid array in another layout (Fortran order, strided, big-endian,
read-only, another float dtype) gives the same result as its C-contiguous float32 copy.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tseg.runtime.crf import DenseCRF, dense_crf, dense_crf_labels, unary_from_probs
from tseg.runtime.errors import TsegError

SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
BAD_SETTINGS = settings(SETTINGS, max_examples=250)  # fail fast: cheap, and many kinds


@st.composite
def valid_case(draw):
    """Small probabilities (C, H, W) in [0, 1], an image (H, W, 3) and CRF settings."""
    num_classes = draw(st.integers(1, 5))
    height, width = draw(st.integers(1, 9)), draw(st.integers(1, 9))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    probs = rng.random((num_classes, height, width)).astype(np.float32)
    if draw(st.booleans()):  # a softmax, or any values in [0, 1]
        probs /= probs.sum(0)
    if draw(st.booleans()):  # exact zeros and ones
        probs[rng.random(probs.shape) < 0.3] = draw(st.sampled_from([0.0, 1.0]))
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    compat = st.one_of(st.floats(-10, 10),
                       st.just(rng.uniform(-10, 10, num_classes)),
                       st.just(rng.uniform(-10, 10, (num_classes, num_classes))))
    kwargs = {
        "iterations": draw(st.integers(0, 3)),
        "gaussian_sxy": draw(st.floats(0.5, 200)),
        "bilateral_sxy": draw(st.floats(0.5, 200)),
        "bilateral_srgb": draw(st.floats(0.5, 200)),
        "gaussian_compat": draw(compat),
        "bilateral_compat": draw(compat),
        "threads": draw(st.sampled_from([1, 2])),
    }
    return probs, image, kwargs


@SETTINGS
@given(valid_case())
def test_valid_inputs_give_probabilities(case):
    probs, image, kwargs = case
    q = dense_crf(probs, image, **kwargs)
    assert q.shape == probs.shape and q.dtype == np.float32 and q.flags.c_contiguous
    assert np.isfinite(q).all() and q.min() >= 0.0 and q.max() <= 1.0
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)


def _other_layouts(x: np.ndarray, floats: bool) -> dict[str, np.ndarray]:
    """The same values as x in other memory layouts (and dtypes, for floats)."""
    strided = np.zeros((2 * x.shape[0],) + x.shape[1:], x.dtype)[::2]  # every other row
    strided[...] = x
    readonly = x.copy()
    readonly.flags.writeable = False
    layouts = {"fortran": np.asfortranarray(x), "strided": strided, "readonly": readonly,
               "reversed": np.flip(np.flip(x, -1).copy(), -1)}  # negative strides
    if floats:
        layouts["big-endian"] = x.astype(x.dtype.newbyteorder(">"))
        layouts["float64"] = x.astype(np.float64)
    return layouts


@SETTINGS
@given(valid_case())
def test_any_layout_gives_the_c_contiguous_result(case):
    probs, image, kwargs = case
    expected = dense_crf(probs, image, **kwargs)
    for name, other in _other_layouts(probs, floats=True).items():
        np.testing.assert_array_equal(dense_crf(other, image, **kwargs), expected, err_msg=name)
    for name, other in _other_layouts(image, floats=False).items():
        np.testing.assert_array_equal(dense_crf(probs, other, **kwargs), expected, err_msg=name)
    unary = unary_from_probs(probs)
    iterations = kwargs.pop("iterations")
    crf = DenseCRF(image, **kwargs)
    expected = crf.inference(unary, iterations=iterations)
    for name, other in _other_layouts(unary, floats=True).items():
        np.testing.assert_array_equal(crf.inference(other, iterations=iterations), expected,
                                      err_msg=name)
    crf.close()


# ---------------------------------------------------------------- bad arguments

NOT_A_NUMBER = [None, "3", b"3", True, False, np.bool_(True), 3 + 0j, [3.0], {"a": 1}, object()]


def _bad_arrays(shape: tuple) -> list:
    """Arrays for something of ``shape`` that no float check may accept."""
    c, h, w = shape
    bad = [np.zeros((h, w), np.float32), np.zeros((1, c, h, w), np.float32),
           np.zeros((0, h, w), np.float32), np.zeros((c, 0, w), np.float32),
           np.zeros((c, h, 0), np.float32), np.zeros((c, h + 1, w), np.float32),
           np.zeros((c, h, w + 2), np.float32), np.zeros(shape, np.int32),
           np.zeros(shape, bool), np.zeros(shape, np.complex64), np.zeros(shape, object),
           np.zeros(shape, "U3"), np.full(shape, np.nan, np.float32),
           np.full(shape, np.inf, np.float64), np.zeros((), np.float32)]
    return bad + [a.tolist() for a in bad[:2]] + NOT_A_NUMBER[:3]


BAD_WIDTHS = [0, 0.0, -1.0, -1e-30, float("nan"), float("inf"), -float("inf"), 1e-40, 1e-320,
              1e39, 1e300, 10**400, -(10**400), 1e-12] + NOT_A_NUMBER

BAD_COMPATS = [float("nan"), float("inf"), 1e7, -1e30, 10**400, np.float64(np.nan)] + [
    x for x in NOT_A_NUMBER if not isinstance(x, list)]


def _bad_compat_arrays(c: int) -> list:
    return [np.ones(c + 1), np.ones((c, c + 1)), np.ones((c, c, c)), np.ones(()), np.ones(0),
            np.ones((c + 1, c + 1)), np.full(c, np.nan), np.full((c, c), -np.inf),
            np.full(c, 1e9), np.ones(c, bool), np.ones(c, np.complex128), np.array(["a"] * c),
            [1.0] * (c - 1) + ["x"], [[1.0]] * c + [1.0], np.array([None] * c),
            np.full(c, np.iinfo(np.int64).min)]


@st.composite
def bad_case(draw):
    """A valid case with one argument replaced by a bad one."""
    probs, image, kwargs = draw(valid_case())
    c, h, w = probs.shape
    which = draw(st.sampled_from(["probs", "range", "image", "iterations", "width", "compat",
                                  "threads"]))
    if which == "probs":
        probs = draw(st.sampled_from(_bad_arrays(probs.shape)))
    elif which == "range":  # values outside [0, 1]
        probs = probs.copy()
        probs.flat[draw(st.integers(0, probs.size - 1))] = draw(st.sampled_from(
            [-1e-3, 1.001, 2.0, -np.inf, np.nan, 1e38]))
    elif which == "image":
        image = draw(st.sampled_from([
            image.astype(np.float32), image.astype(np.int16), image.astype(bool),
            image[..., :2].copy(), np.dstack([image, image[..., :1]]), image[..., 0].copy(),
            image[None], np.zeros((0, w, 3), np.uint8), np.zeros((h, 0, 3), np.uint8),
            np.zeros((h + 1, w, 3), np.uint8), image.tolist(), None, "image.png"]))
    elif which == "iterations":
        kwargs["iterations"] = draw(st.sampled_from([-1, -(10**30), 2.0, 1.5, float("nan"), "5",
                                                     None, True, np.float32(2)]))
    elif which == "width":
        name = draw(st.sampled_from(["gaussian_sxy", "bilateral_sxy", "bilateral_srgb"]))
        kwargs[name] = draw(st.sampled_from(BAD_WIDTHS))
    elif which == "compat":
        name = draw(st.sampled_from(["gaussian_compat", "bilateral_compat"]))
        kwargs[name] = draw(st.sampled_from(BAD_COMPATS + _bad_compat_arrays(c)))
    else:
        kwargs["threads"] = draw(st.sampled_from([0, -2, 1.0, "2", True, float("inf")]))
    return probs, image, kwargs


@BAD_SETTINGS
@given(bad_case())
def test_bad_arguments_raise_one_line_tseg_errors(case):
    probs, image, kwargs = case
    with pytest.raises(TsegError) as info:
        dense_crf(probs, image, **kwargs)
    message = str(info.value)
    assert message and "\n" not in message


@st.composite
def bad_labels_case(draw):
    """dense_crf_labels with one bad argument among the labels-specific ones."""
    _, image, kwargs = draw(valid_case())
    h, w = image.shape[:2]
    num_classes = draw(st.integers(2, 5))
    labels = np.zeros((h, w), np.uint8)
    args = {"num_classes": num_classes, "gt_prob": 0.7, "unknown_label": None}
    which = draw(st.sampled_from(["labels", "num_classes", "gt_prob", "unknown_label", "unary"]))
    if which == "labels":
        labels = draw(st.sampled_from([
            np.full((h, w), num_classes), np.full((h, w), -1), labels.astype(np.float32),
            labels.astype(bool), labels[None], labels.ravel(), np.zeros((h, 0), np.uint8),
            labels.tolist(), np.full((h, w), 2**63 - 1, np.int64)]))
    elif which == "num_classes":
        args["num_classes"] = draw(st.sampled_from([1, 0, -3, 2.0, True, "3", None]))
    elif which == "gt_prob":
        args["gt_prob"] = draw(st.sampled_from([0.0, 1.0, -0.5, 1.5, float("nan"), 10**400,
                                                "0.7", None, True]))
    elif which == "unknown_label":
        labels = np.full((h, w), 255, np.uint8)
        args["unknown_label"] = draw(st.sampled_from([254, "255", 255.0, True, [255]]))
    else:  # a bad compat for this number of classes
        kwargs["bilateral_compat"] = draw(st.sampled_from(_bad_compat_arrays(num_classes)))
    return labels, image, {**args, **kwargs}


@BAD_SETTINGS
@given(bad_labels_case())
def test_bad_label_arguments_raise_one_line_tseg_errors(case):
    labels, image, kwargs = case
    with pytest.raises(TsegError) as info:
        dense_crf_labels(labels, image, **kwargs)
    assert "\n" not in str(info.value)


@SETTINGS
@given(valid_case(), st.sampled_from(["nan", "inf", "huge", "shape", "int", "list", "empty"]))
def test_bad_unaries_raise_one_line_tseg_errors(case, kind):
    probs, image, kwargs = case
    unary = unary_from_probs(probs)
    bad = {"nan": np.where(unary > 1, np.nan, unary).astype(np.float32) if (unary > 1).any()
           else np.full_like(unary, np.nan),
           "inf": np.full_like(unary, -np.inf),
           "huge": unary * 0 + np.float32(3e38),
           "shape": unary[:, :, :-1] if unary.shape[2] > 1 else unary[:, :0],
           "int": unary.astype(np.int64),
           "list": unary.tolist(),
           "empty": unary[:0]}[kind]
    iterations = kwargs.pop("iterations")
    with DenseCRF(image, **kwargs) as crf, pytest.raises(TsegError) as info:
        crf.inference(bad, iterations=iterations)
    assert "\n" not in str(info.value)
