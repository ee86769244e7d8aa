"""CrfParams as the runtime uses it: refine / refine_logits (capped resolution for big photos),
max_pixels in crf.json, and Numba imported only when a CRF runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from dataclasses import asdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tseg.runtime.errors import TsegError
from tseg.runtime.images import resize_image
from tseg.runtime.scores import labels_from_scores, resize_scores, softmax
from tseg.runtime.segment.refine import MAX_CRF_PIXELS, MAX_PIXELS_RANGE, CrfParams, capped_size
from tseg.runtime.segment.upsample import upsample_labels


def scene(height: int, width: int, classes: int = 4, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An (H, W, 3) uint8 image of colour blocks and (C, 16, 16) logits that roughly agree with it."""
    rng = np.random.default_rng(seed)
    block = rng.integers(0, classes, size=(4, 4))
    truth = np.kron(block, np.ones((-(-height // 4), -(-width // 4)), dtype=np.int64))[:height, :width]
    colours = rng.integers(0, 256, size=(classes, 3), dtype=np.uint8)
    image = np.clip(colours[truth] + rng.normal(0, 8, (height, width, 3)), 0, 255).astype(np.uint8)
    one_hot = np.eye(classes, dtype=np.float32)[block].transpose(2, 0, 1) * 2.0
    logits = resize_scores(one_hot, (16, 16)) + rng.normal(0, 1.0, (classes, 16, 16)).astype(np.float32)
    return image, np.ascontiguousarray(logits, dtype=np.float32)


def old_refine(params: CrfParams, scores: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The refine of before this issue: the CRF at the image's size, always."""
    from tseg.runtime.crf import dense_crf

    kwargs = {k: v for k, v in asdict(params).items() if k not in ("max_pixels", "device")}
    return labels_from_scores(dense_crf(softmax(scores), image, **kwargs))


@pytest.mark.parametrize("shape", [(40, 50), (32, 32), (17, 61)])
def test_below_the_cap_refine_logits_is_the_refine_of_before(shape):
    image, logits = scene(*shape)
    params = CrfParams(iterations=3, max_pixels=shape[0] * shape[1])  # exactly at the cap: not capped
    expected = old_refine(params, resize_scores(logits, shape), image)
    np.testing.assert_array_equal(params.refine_logits(logits, image), expected)
    np.testing.assert_array_equal(params.refine(resize_scores(logits, shape), image), expected)
    assert (expected != labels_from_scores(logits, shape)).any(), "the CRF changed nothing: a weak test"


def test_above_the_cap_the_crf_runs_at_the_capped_size(monkeypatch):
    import tseg.runtime.crf.dense as dense

    image, logits = scene(64, 80)
    params = CrfParams(iterations=3, max_pixels=1024)
    seen = []
    real = dense.dense_crf

    def recording(probs, small, **kwargs):
        seen.append((probs.shape, small.shape, kwargs))
        return real(probs, small, **kwargs)

    monkeypatch.setattr(dense, "dense_crf", recording)
    labels = params.refine_logits(logits, image)
    size = capped_size(64, 80, 1024)
    assert size[0] * size[1] <= 1024 and labels.shape == (64, 80) and labels.dtype == np.uint8
    assert seen == [((4, *size), (*size, 3), {"threads": None, "device": "cpu", **params.crf_kwargs()})]
    expected_probs = real(softmax(resize_scores(logits, size)), resize_image(image, size), **params.crf_kwargs())
    np.testing.assert_array_equal(labels, upsample_labels(expected_probs, (64, 80)))
    # refine() on full-size scores honours the cap too, and lands close to refine_logits.
    from_scores = params.refine(resize_scores(logits, (64, 80)), image)
    assert len(seen) == 2 and seen[1][1] == (*size, 3)
    assert (from_scores == labels).mean() > 0.9


def test_above_the_cap_no_full_size_class_scores_are_held():
    classes, height, width = 12, 600, 800
    image, logits = scene(height, width, classes)
    params = CrfParams(iterations=2, max_pixels=4096)
    params.refine_logits(logits, image[:70, :70].copy())  # compile and warm the pools outside the measure
    tracemalloc.start()
    try:
        labels = params.refine_logits(logits, image)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert labels.shape == (height, width)
    full_scores = classes * height * width * 4  # one (C, H, W) float32 array: 23 MB
    assert peak < full_scores / 2, f"peak {peak / 2**20:.1f} MiB"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.integers(1, 10**5), st.integers(1, 10**5), st.integers(*MAX_PIXELS_RANGE))
def test_capped_size_fits_the_cap_and_keeps_the_aspect(height, width, cap):
    small_h, small_w = capped_size(height, width, cap)
    assert 1 <= small_h <= height and 1 <= small_w <= width
    if height * width <= cap:
        assert (small_h, small_w) == (height, width)
    else:
        assert small_h * small_w <= cap
        if min(small_h, small_w) >= 20:  # aspect kept to rounding
            assert abs(small_h / small_w - height / width) <= 0.1 * height / width


def test_max_pixels_is_saved_loaded_and_defaults_for_old_files(tmp_path):
    path = tmp_path / "crf.json"
    CrfParams(max_pixels=250_000, iterations=4).save(path)
    assert json.loads(path.read_text())["max_pixels"] == 250_000
    assert CrfParams.load(path) == CrfParams(max_pixels=250_000, iterations=4)
    old = {k: v for k, v in asdict(CrfParams(iterations=2)).items() if k not in ("max_pixels", "device")}
    path.write_text(json.dumps(old))
    assert CrfParams.load(path).max_pixels == MAX_CRF_PIXELS
    path.write_text(json.dumps({"max_pixels": "1000000"}))
    with pytest.raises(TsegError, match=r"crf.json: CRF max_pixels must be an integer"):
        CrfParams.load(path)


@pytest.mark.parametrize("value", [True, 1e6, "1000000", None, 0, -5, 1023, 10**12 + 1])
def test_bad_max_pixels_is_a_one_line_error(value):
    with pytest.raises(TsegError, match="CRF max_pixels must be") as err:
        CrfParams(max_pixels=value)
    assert "\n" not in str(err.value)


def test_crf_kwargs_are_dense_crfs_arguments():
    params = CrfParams(iterations=2, gaussian_sxy=2.0, max_pixels=5000)
    kwargs = params.crf_kwargs()
    assert "max_pixels" not in kwargs and kwargs["gaussian_sxy"] == 2.0 and kwargs["iterations"] == 2
    assert "device" not in kwargs and set(kwargs) | {"max_pixels", "device"} == set(asdict(params))


@pytest.mark.parametrize(
    ("logits", "image", "message"),
    [
        (np.zeros((3, 4, 4), np.float32), np.zeros((5, 5), np.uint8), "need an \\(H, W, 3\\) uint8 image"),
        (np.zeros((3, 4, 4), np.float32), np.zeros((5, 5, 3), np.float32), "need an \\(H, W, 3\\) uint8 image"),
        (np.zeros((3, 4), np.float32), np.zeros((5, 5, 3), np.uint8), "need \\(C, h, w\\) float logits"),
        (np.zeros((3, 4, 4), np.int32), np.zeros((5, 5, 3), np.uint8), "need \\(C, h, w\\) float logits"),
        ("logits", np.zeros((5, 5, 3), np.uint8), "need \\(C, h, w\\) float logits"),
    ],
)
def test_bad_inputs_are_one_line_errors(logits, image, message):
    with pytest.raises(TsegError, match=message):
        CrfParams().refine_logits(logits, image)


def test_refine_refuses_scores_of_another_size():
    image, logits = scene(20, 20)
    with pytest.raises(TsegError, match="do not match the image's size"):
        CrfParams().refine(resize_scores(logits, (20, 21)), image)


MODULES_WITHOUT_NUMBA = (
    "tseg.runtime",
    "tseg.runtime.infer.run",
    "tseg.runtime.infer.cli",
    "tseg.runtime.segment.refine",
    "tseg.runtime.infer.crf_tune",
    "tseg.runtime.segment.upsample",
)


@pytest.mark.parametrize("module", MODULES_WITHOUT_NUMBA)
def test_numba_is_imported_only_when_a_crf_runs(module):
    code = f"import sys, {module}; assert 'numba' not in sys.modules, 'numba imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_running_a_crf_imports_numba():
    code = (
        "import sys, numpy as np; from tseg.runtime.segment.refine import CrfParams\n"
        "assert 'numba' not in sys.modules\n"
        "CrfParams(iterations=1).refine_logits(np.zeros((2, 4, 4), np.float32), np.zeros((8, 8, 3), np.uint8))\n"
        "assert 'numba' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=300)


def test_the_crf_thread_count_does_not_change_the_labels():
    image, logits = scene(48, 40)
    params = CrfParams(iterations=3)
    one, every = params.refine_logits(logits, image, threads=1), params.refine_logits(logits, image)
    np.testing.assert_array_equal(one, every)
