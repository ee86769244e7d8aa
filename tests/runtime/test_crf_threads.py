"""The dense CRF's results do not depend on the number of threads, bit for bit, and the
logits-to-labels path gives the labels of the NumPy chain it replaces."""

from __future__ import annotations

import numpy as np
import pytest

from tseg.runtime.crf import dense, dense_crf, labels_from_logits, labels_from_probs
from tseg.runtime.scores import argmax_classes, resize_scores, softmax

DEEPLAB = {"gaussian_sxy": 1.0, "gaussian_compat": 3.0, "bilateral_sxy": 67.0,
           "bilateral_srgb": 3.0, "bilateral_compat": 4.0}


def scene(height: int, width: int, classes: int, seed: int = 0):
    """A photo-like image (smooth colours, edges, noise) and low-resolution logits."""
    rng = np.random.default_rng(seed)
    low = rng.uniform(0, 255, (6, 7, 3))
    rows = np.linspace(0, 5, height)[:, None]
    cols = np.linspace(0, 6, width)[None, :]
    image = low[rows.astype(int), cols.astype(int)] + rng.normal(0, 10, (height, width, 3))
    image = np.clip(image, 0, 255).astype(np.uint8)
    logits = rng.normal(0, 2.0, (classes, height // 4, width // 4)).astype(np.float32)
    return image, logits


@pytest.mark.parametrize("settings", [{}, DEEPLAB], ids=["default", "deeplab"])
def test_q_and_labels_are_the_same_on_1_2_and_3_threads(settings):
    # 256 x 288 with DeepLab's sxy=1: a Gaussian lattice big enough for the shared blur.
    image, logits = scene(256, 288, 12)
    probs = softmax(resize_scores(logits, image.shape[:2]))
    dense._gaussian_cache.clear()
    q = {t: dense_crf(probs, image, iterations=4, threads=t, **settings) for t in (1, 2, 3)}
    labels = {t: labels_from_logits(logits, image, iterations=4, threads=t, **settings)
              for t in (1, 2, 3)}
    from_probs = {t: labels_from_probs(probs, image, iterations=4, threads=t, **settings)
                  for t in (1, 2, 3)}
    for t in (2, 3):
        np.testing.assert_array_equal(q[t], q[1])
        np.testing.assert_array_equal(labels[t], labels[1])
        np.testing.assert_array_equal(from_probs[t], from_probs[1])
    np.testing.assert_array_equal(labels[1], argmax_classes(q[1]))
    np.testing.assert_array_equal(from_probs[1], argmax_classes(q[1]))


@pytest.mark.parametrize("shape", [(2, 1, 1), (5, 17, 23), (21, 40, 33), (300, 9, 11)])
@pytest.mark.parametrize("iterations", [0, 3])
def test_labels_from_probs_are_dense_crfs_argmax(shape, iterations):
    """Any class count (uint16 labels beyond 256), odd sizes, no iteration at all."""
    classes, height, width = shape
    rng = np.random.default_rng(classes)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    probs = softmax(rng.normal(0, 2, shape).astype(np.float32))
    got = labels_from_probs(probs, image, iterations=iterations, threads=2)
    assert got.shape == (height, width) and got.dtype == (np.uint8 if classes <= 256 else np.uint16)
    np.testing.assert_array_equal(got, argmax_classes(dense_crf(probs, image, iterations=iterations)))


@pytest.mark.parametrize("classes", [3, 20])  # one group of lanes, or two (AVX2: three)
@pytest.mark.parametrize("iterations", [0, 1])
def test_near_ties_give_dense_crfs_argmax(classes, iterations):
    """Labels skip the softmax where one logit stands out by 1e-5; the pixels whose top
    logits lie closer (equal, 1 ulp to 1e-4 apart, in one lane group or two) take
    Q's argmax, the first of equal values."""
    rng = np.random.default_rng(classes)
    height, width = 24, 40
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    logits = rng.normal(0, 1, (classes, height, width)).astype(np.float32)
    first, second = 1, classes - 2  # the pair of classes made nearly equal, far apart
    gaps = np.float32([0, 1e-7, 1e-6, 3e-6, 9e-6, 1e-5, 1.1e-5, 3e-5, 1e-4, 1e-3])
    logits[first] = logits.max(0) + 1
    logits[second] = logits[first] - gaps[np.arange(width) % gaps.size]
    logits[second, ::2] = logits[first, ::2] + gaps[np.arange(width) % gaps.size]
    probs = softmax(logits)
    got = labels_from_probs(probs, image, iterations=iterations, threads=2, bilateral_compat=0.1,
                            gaussian_compat=0.1)
    want = argmax_classes(dense_crf(probs, image, iterations=iterations, bilateral_compat=0.1,
                                    gaussian_compat=0.1))
    np.testing.assert_array_equal(got, want)
    assert {first, second} <= set(np.unique(want))


@pytest.mark.parametrize("gap_ulps", [1, 2, 100])
def test_a_label_is_qs_argmax_where_exp_rounds_two_logits_together(gap_ulps):
    """Logits 1 ulp apart near 0: exp rounds both to 1, Q ties, and Q's argmax is the
    first of the two, not the larger logit; far enough apart, the larger one."""
    from tseg.runtime.crf import meanfield, simd

    lanes = 2 * simd.LANES
    for where in [(0, 1), (3, simd.LANES + 2)]:  # in one lane group, or across two
        x = np.full((8, lanes), -3.4e38, np.float32)
        top = np.float32(0.01)
        below = top
        for _ in range(gap_ulps):
            below = np.nextafter(below, np.float32(-1))
        x[2, where[0]], x[2, where[1]] = below, top
        x[2, 5 if 5 not in where else 6] = top - 1
        e = np.exp(x[2] - top)  # float32, as Q's numerators: equal ones tie in Q
        want = where[0] if e[where[0]] == e[where[1]] else where[1]
        assert (want == where[0]) == (gap_ulps < 100)
        assert meanfield._label(x, 2, top, lanes) == want


def test_labels_from_probs_refuses_what_dense_crf_refuses():
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(Exception, match=r"probs: need values in \[0, 1\]"):
        labels_from_probs(np.full((3, 8, 8), 1.5, np.float32), image)
    with pytest.raises(Exception, match="probs: need shape"):
        labels_from_probs(np.full((3, 8, 9), 0.3, np.float32), image)


@pytest.mark.parametrize("iterations", [0, 1, 5])
def test_labels_from_logits_are_the_labels_of_the_numpy_chain(iterations):
    image, logits = scene(96, 120, 7, seed=3)
    chain = argmax_classes(dense_crf(softmax(resize_scores(logits, (96, 120))), image,
                                     iterations=iterations))
    got = labels_from_logits(logits, image, iterations=iterations)
    assert got.dtype == np.uint8 and got.shape == (96, 120)
    np.testing.assert_array_equal(got, chain)
    # Logits already at the image's size: no resize, the same labels.
    full = resize_scores(logits, (96, 120))
    np.testing.assert_array_equal(labels_from_logits(full, image, iterations=iterations), chain)


def test_labels_from_logits_take_any_float_layout():
    """float64, big-endian, Fortran-ordered, sliced and read-only logits: the labels of
    the same values as a C-ordered float32 array (each layout made pixel-major alike)."""
    image, logits = scene(37, 53, 21, seed=5)  # 21 classes: two lane groups on AVX2
    want = labels_from_logits(logits, image, iterations=2)
    read_only = logits.copy()
    read_only.flags.writeable = False
    wide = np.zeros((21, 2 * logits.shape[1], 3 * logits.shape[2]), np.float32)
    wide[:, ::2, ::3] = logits
    for other in (logits.astype(np.float64), logits.astype(">f4"), np.asfortranarray(logits),
                  wide[:, ::2, ::3], read_only):
        np.testing.assert_array_equal(labels_from_logits(other, image, iterations=2), want)


def test_labels_from_logits_refuses_bad_logits():
    image, logits = scene(16, 16, 3)
    bad = logits.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(Exception, match="finite"):
        labels_from_logits(bad, image)
    with pytest.raises(Exception, match="2 classes"):
        labels_from_logits(logits[:1], image)


@pytest.mark.parametrize("shape", [(3, 5, 7), (12, 16, 16), (2, 1, 1)])
def test_unary_from_probs_is_numpys_within_two_ulp(shape):
    from tseg.runtime.crf import unary_from_probs

    rng = np.random.default_rng(1)
    probs = rng.uniform(0, 1, shape).astype(np.float32)
    probs.flat[:2] = (0.0, 1.0)  # clipped below, log 1 = 0
    got = unary_from_probs(probs)
    expected = -np.log(np.clip(probs, np.float32(1e-5), np.float32(1)))
    assert got.dtype == np.float32 and got.shape == shape
    assert np.abs(got.view(np.int32) - expected.view(np.int32)).max() <= 2
    assert got.flat[1] == 0
