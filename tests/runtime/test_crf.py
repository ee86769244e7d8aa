"""Dense CRF API: shapes, step-wise inference, threads, Numba settings (argument checks:
test_crf_validation.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tseg.runtime.crf import (
    DenseCRF,
    dense_crf,
    dense_crf_labels,
    unary_from_labels,
    unary_from_probs,
)
from tseg.runtime.errors import TsegError


def make_image(height=24, width=32, seed=0):
    """Two flat colour halves plus a little noise."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float64)
    image[:, : width // 2] = (200, 40, 40)
    image[:, width // 2:] = (30, 60, 220)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_probs(num_classes=3, height=24, width=32, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (num_classes, height, width))
    probs = np.exp(logits - logits.max(0))
    return (probs / probs.sum(0)).astype(np.float32)


def softmax(x, axis=0):
    e = np.exp(x - x.max(axis))
    return e / e.sum(axis)


# ---------------------------------------------------------------- outputs


def noisy_two_halves(height=40, width=40, seed=1):
    """A two-colour image, its true labels (the halves) and probabilities whose argmax
    is wrong on about a quarter of the pixels, at random."""
    image = make_image(height, width)
    truth = np.zeros((height, width), np.int64)
    truth[:, width // 2:] = 1
    rng = np.random.default_rng(seed)
    noisy = np.where(rng.random(truth.shape) < 0.25, 1 - truth, truth)
    probs = np.stack([np.where(noisy == 0, 0.6, 0.4), np.where(noisy == 1, 0.6, 0.4)])
    return image, truth, noisy, probs.astype(np.float32)


def test_dense_crf_returns_normalised_float32():
    probs = make_probs()
    q = dense_crf(probs, make_image())
    assert q.shape == (3, 24, 32) and q.dtype == np.float32 and q.flags.c_contiguous
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)
    assert q.min() >= 0.0 and q.max() <= 1.0
    # Random probabilities on two flat halves: the CRF smooths them (not an identity).
    assert (q.argmax(0) != probs.argmax(0)).mean() > 0.2
    for half in (q[:, :, :16], q[:, :, 16:]):
        assert np.bincount(half.argmax(0).ravel(), minlength=3).max() > 0.9 * half[0].size


def test_dense_crf_follows_the_image_edge():
    """Probabilities that are wrong at random pixels settle to the image's two halves:
    the CRF moves them away from the input (an identity would keep the noise)."""
    image, truth, noisy, probs = noisy_two_halves()
    q = dense_crf(probs, image, iterations=5)
    assert (noisy == truth).mean() < 0.8
    assert (q.argmax(0) == truth).mean() > 0.99
    flipped = noisy != truth
    # Where the input was wrong the CRF is confident in the right label, not 0.4.
    right = np.take_along_axis(q, truth[None], axis=0)[0]
    assert right[flipped].min() > 0.9
    np.testing.assert_allclose(q.sum(0), 1.0, atol=1e-5)


def test_zero_iterations_is_softmax_of_unary():
    probs = make_probs()
    q = dense_crf(probs, make_image(), iterations=0)
    np.testing.assert_allclose(q, softmax(-unary_from_probs(probs)), atol=1e-6)


def test_crf_follows_the_image_edge():
    """Noisy labels on a two-colour image settle to the two halves."""
    image, truth, noisy, _ = noisy_two_halves()
    noisy = noisy.astype(np.uint8)
    refined = dense_crf_labels(noisy, image, num_classes=2, iterations=5)
    assert refined.dtype == np.uint8
    assert (refined == truth).mean() > 0.99 > (noisy == truth).mean()


def test_label_zero_is_a_real_class():
    unary = unary_from_labels(np.array([[0, 1], [2, 0]]), num_classes=3, gt_prob=0.7)
    assert unary.shape == (3, 2, 2) and unary.dtype == np.float32
    np.testing.assert_allclose(unary[:, 0, 0], -np.log([0.7, 0.15, 0.15]), rtol=1e-6)
    np.testing.assert_allclose(unary[:, 1, 0], -np.log([0.15, 0.15, 0.7]), rtol=1e-6)


def test_unknown_label_gets_a_uniform_unary():
    unary = unary_from_labels(np.array([[255, 1]]), num_classes=4, unknown_label=255)
    np.testing.assert_allclose(unary[:, 0, 0], -np.log(0.25), rtol=1e-6)
    assert unary[1, 0, 1] < unary[0, 0, 1]


def test_unary_from_probs_clips_zeros():
    probs = np.zeros((2, 1, 1), np.float32)
    probs[0] = 1.0
    unary = unary_from_probs(probs)
    np.testing.assert_allclose(unary[:, 0, 0], [0.0, -np.log(1e-5)], rtol=1e-5)


# ---------------------------------------------------------------- API shapes


def test_step_wise_equals_one_shot():
    image, probs = make_image(), make_probs()
    crf = DenseCRF(image)
    unary = unary_from_probs(probs)
    state = crf.start(unary)
    state.step(2)
    state.step(3)
    assert state.iterations == 5
    np.testing.assert_array_equal(state.probs(), crf.inference(unary, iterations=5))
    np.testing.assert_array_equal(state.labels(), state.probs().argmax(0))


def test_lattices_are_reused_across_unaries():
    image = make_image()
    crf = DenseCRF(image)
    for seed, num_classes in ((0, 3), (1, 5)):
        probs = make_probs(num_classes, seed=seed)
        np.testing.assert_array_equal(crf.inference(unary_from_probs(probs)),
                                      dense_crf(probs, image))


@pytest.mark.parametrize("lanes", ["8", "16"])
def test_either_vector_width_gives_the_same_result(lanes, tmp_path):
    """Mean field runs in groups of 8 or 16 labels (by the CPU); both agree."""
    script = textwrap.dedent("""
        import sys, numpy as np
        from tseg.runtime.crf import dense_crf, simd
        assert simd.LANES == int(sys.argv[1]), simd.LANES
        data = np.load(sys.argv[2])
        np.save(sys.argv[2], dense_crf(data["probs"], data["image"]))
    """)
    image, probs = make_image(30, 20), make_probs(11, 30, 20)  # 11 labels: one group padded
    inputs = tmp_path / "case.npz"
    np.savez(inputs, probs=probs, image=image)
    env = {**os.environ, "TSEG_CRF_LANES": lanes, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    subprocess.run([sys.executable, "-c", script, lanes, str(inputs)], env=env, check=True)
    np.testing.assert_allclose(np.load(tmp_path / "case.npz.npy"), dense_crf(probs, image),
                               atol=1e-5)


def test_big_lattices_share_their_blur_with_the_same_result(monkeypatch):
    """Lattices of many vertices gather and blur axis by axis on all threads."""
    from tseg.runtime.crf import meanfield

    image, probs = make_image(40, 30), make_probs(4, 40, 30)
    small = dense_crf(probs, image, threads=2)
    monkeypatch.setattr(meanfield, "_SHARED_BLUR_ROWS", 1)
    np.testing.assert_array_equal(dense_crf(probs, image, threads=2), small)


def test_threads_do_not_change_results():
    image, probs = make_image(64, 80), make_probs(4, 64, 80)
    one = dense_crf(probs, image, threads=1)
    np.testing.assert_array_equal(one, dense_crf(probs, image, threads=2))
    np.testing.assert_array_equal(one, dense_crf(probs, image, threads=3))


def test_compat_forms_agree():
    """Potts w == diagonal vector -w == matrix -w I; a matrix is symmetrised."""
    image, probs = make_image(), make_probs(3)
    potts = dense_crf(probs, image, gaussian_compat=3.0, bilateral_compat=10.0)
    vector = dense_crf(probs, image, gaussian_compat=np.full(3, -3.0),
                       bilateral_compat=[-10.0, -10.0, -10.0])
    matrix = dense_crf(probs, image, gaussian_compat=-3.0 * np.eye(3),
                       bilateral_compat=-10.0 * np.eye(3))
    np.testing.assert_allclose(vector, potts, atol=1e-6)
    np.testing.assert_allclose(matrix, potts, atol=1e-6)
    m = np.random.default_rng(0).uniform(-5, 5, (3, 3)).astype(np.float32)
    np.testing.assert_allclose(dense_crf(probs, image, bilateral_compat=m),
                               dense_crf(probs, image, bilateral_compat=m.T), atol=1e-6)


def test_gaussian_lattice_is_shared_by_same_size_images():
    from tseg.runtime.crf import dense

    first, second = DenseCRF(make_image(seed=0)), DenseCRF(make_image(seed=1))
    assert first.gaussian is second.gaussian
    assert DenseCRF(make_image(), gaussian_sxy=2.0).gaussian is not first.gaussian
    probs = make_probs()
    cached = dense_crf(probs, make_image())
    dense._gaussian_cache.clear()
    np.testing.assert_array_equal(dense_crf(probs, make_image()), cached)


def test_keys_split_over_two_words_give_the_same_result(monkeypatch):
    """Key fields that do not fit one int64 go to the second word."""
    from tseg.runtime.crf import dense, hashing

    image, probs = make_image(48, 40), make_probs(4, 48, 40)
    dense._gaussian_cache.clear()
    one_word = dense_crf(probs, image, bilateral_sxy=200.0, bilateral_srgb=60.0)
    layouts = []
    original = hashing.key_layout

    def spy(*args, **kwargs):
        layouts.append(original(*args, direct_limit=0))  # hashed, not direct-addressed
        return layouts[-1]

    monkeypatch.setattr(hashing, "key_layout", spy)
    monkeypatch.setattr(hashing, "_WORD_BITS", 24)
    dense._gaussian_cache.clear()
    two_words = dense_crf(probs, image, bilateral_sxy=200.0, bilateral_srgb=60.0)
    dense._gaussian_cache.clear()
    # The bilateral lattice's keys (hashed, not direct) use both words.
    assert any(size == 0 and units[:, 0].any() and units[:, 1].any()
               for _, units, size in layouts)
    np.testing.assert_array_equal(two_words, one_word)


def test_direct_and_hashed_lattices_agree(monkeypatch):
    """Small key boxes (the Gaussian lattice) are indexed directly, others hashed: the
    same image through both paths gives the same result."""
    from tseg.runtime.crf import dense, hashing

    image, probs = make_image(37, 53), make_probs(5, 37, 53)
    dense._gaussian_cache.clear()
    default = dense_crf(probs, image, bilateral_srgb=5.0)
    original = hashing.key_layout
    monkeypatch.setattr(hashing, "key_layout",
                        lambda *args, **kwargs: original(*args, direct_limit=0))
    dense._gaussian_cache.clear()
    hashed = dense_crf(probs, image, bilateral_srgb=5.0)
    monkeypatch.setattr(hashing, "key_layout",
                        lambda *args, **kwargs: original(*args, direct_limit=1 << 22))
    dense._gaussian_cache.clear()
    direct = dense_crf(probs, image, bilateral_srgb=5.0)
    dense._gaussian_cache.clear()
    np.testing.assert_array_equal(hashed, default)
    np.testing.assert_array_equal(direct, default)


def test_too_wide_lattice_keys_are_refused():
    from tseg.runtime.crf import hashing

    with pytest.raises(TsegError, match="larger kernel widths"):
        hashing.key_layout(np.zeros(5), np.full(5, 2.0**40), 5)


def test_single_pixel_and_single_class():
    q = dense_crf(np.ones((1, 1, 1), np.float32), np.zeros((1, 1, 3), np.uint8))
    np.testing.assert_array_equal(q, np.ones((1, 1, 1), np.float32))


def test_block_transposes_equal_numpy():
    """The embedding reads a block's features coordinate-major, and writes its weights
    point-major, with vector shuffles for some widths: they equal NumPy's transposes."""
    from numba import njit

    from tseg.runtime.crf import embed

    @njit
    def both(f, p, soa, back):
        for q in range(0, embed.EMBED_BLOCK, embed._GROUP):
            if f.shape[1] == 2:
                embed._coordinate_major(f, p + q, soa, q, 2)
                embed._point_major(soa, q, back, q, 2)
            elif f.shape[1] == 3:
                embed._coordinate_major(f, p + q, soa, q, 3)
                embed._point_major(soa, q, back, q, 3)
            elif f.shape[1] == 5:
                embed._coordinate_major(f, p + q, soa, q, 5)
                embed._point_major(soa, q, back, q, 5)
            else:
                embed._coordinate_major(f, p + q, soa, q, 6)
                embed._point_major(soa, q, back, q, 6)

    rng = np.random.default_rng(0)
    for d in (2, 3, 5, 6):
        f = rng.normal(size=(3 * embed.EMBED_BLOCK, d)).astype(np.float32)
        soa = np.zeros((d + 2, embed.EMBED_BLOCK), np.float32)  # wider than d rows
        back = np.zeros((embed.EMBED_BLOCK, d), np.float32)
        both(f, 7, soa, back)
        np.testing.assert_array_equal(soa[:d], f[7:7 + embed.EMBED_BLOCK].T)
        np.testing.assert_array_equal(soa[d:], 0)
        np.testing.assert_array_equal(back, f[7:7 + embed.EMBED_BLOCK])
