"""Segmenter, the runtime's Python API, on a hand-made model whose outputs are known."""

from __future__ import annotations

import numpy as np
import pytest

from tests.onnx_models import (
    COLOUR_CLASSES,
    INPUT_SIZE,
    colour_blocks_image,
    colour_labels,
    colour_logits,
    colour_metadata,
    colour_scores,
    write_colour_model,
)
from tseg.runtime.errors import TsegError
from tseg.runtime.scores import labels_from_scores
from tseg.runtime.segment.segmenter import Segmenter

# Odd sizes: smaller and larger than the model's (24, 40), 1-pixel axes, the model's own size.
SIZES = [(1, 1), (1, 97), (97, 1), (24, 40), (40, 24), (37, 53), (333, 17)]


@pytest.fixture(scope="module")
def segmenter(colour_onnx) -> Segmenter:
    return Segmenter(colour_onnx, device="cpu", threads=1)


def image_of(size: tuple[int, int], seed: int = 0) -> np.ndarray:
    return colour_blocks_image(np.random.default_rng(seed), *size)


def test_segmenter_reads_the_models_metadata(segmenter, colour_onnx):
    assert segmenter.metadata == colour_metadata()
    assert segmenter.metadata.classes == COLOUR_CLASSES
    assert segmenter.metadata.input_size == INPUT_SIZE
    assert segmenter.metadata.num_classes == 4
    assert segmenter.model_path == colour_onnx


def test_segmenter_on_cpu_uses_only_the_cpu_provider(segmenter):
    assert segmenter.providers == ["CPUExecutionProvider"] and segmenter.device == "cpu"


@pytest.mark.parametrize("size", SIZES)
def test_logits_are_the_models_at_its_input_size(segmenter, size):
    image = image_of(size)
    logits = segmenter.logits(image)
    assert logits.shape == (4, *INPUT_SIZE) and logits.dtype == np.float32
    np.testing.assert_allclose(logits, colour_logits(image), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_scores_are_the_logits_resized_to_the_image(segmenter, size):
    image = image_of(size, seed=1)
    scores = segmenter.scores(image)
    assert scores.shape == (4, *size) and scores.dtype == np.float32
    np.testing.assert_allclose(scores, colour_scores(image), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("size", SIZES)
def test_predict_is_the_argmax_of_the_scores(segmenter, size):
    image = image_of(size, seed=2)
    labels = segmenter.predict(image).labels
    assert labels.shape == size and labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, labels_from_scores(segmenter.scores(image)))
    expected, decided = colour_labels(image)
    np.testing.assert_array_equal(labels[decided], expected[decided])


def test_predict_finds_every_class_and_is_not_fooled_by_channel_order(segmenter):
    image = np.full((60, 90, 3), 20, np.uint8)  # dark top rows: background
    image[20:, :30] = (230, 30, 30)
    image[20:, 30:60] = (30, 220, 40)
    image[20:, 60:] = (40, 50, 240)
    labels = segmenter.predict(image).labels
    # Away from the edges (blurred by the trip through 24 x 40), each block is its class.
    for label, (rows, cols) in enumerate([(slice(0, 12), slice(None)), (slice(28, None), slice(0, 24)),
                                          (slice(28, None), slice(36, 54)), (slice(28, None), slice(66, None))]):
        assert np.all(labels[rows, cols] == label), label
    # The same pixels in BGR order: red and blue swap classes.
    swapped = segmenter.predict(np.ascontiguousarray(image[..., ::-1])).labels
    assert np.all(swapped[28:, :24] == 3) and np.all(swapped[28:, 66:] == 1)


def test_predict_accepts_views_and_leaves_the_image_alone(segmenter):
    image = image_of((50, 70), seed=4)
    before = image.copy()
    view = image[::2, 1::3]  # not contiguous
    np.testing.assert_array_equal(segmenter.predict(view).labels, segmenter.predict(np.ascontiguousarray(view)).labels)
    np.testing.assert_array_equal(image, before)


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((8, 9, 3), np.float32),
        np.zeros((8, 9, 3), np.int64),
        np.zeros((8, 9, 3), bool),
        np.zeros((8, 9), np.uint8),
        np.zeros((8, 9, 1), np.uint8),
        np.zeros((8, 9, 4), np.uint8),
        np.zeros((1, 8, 9, 3), np.uint8),
        np.zeros((0, 9, 3), np.uint8),
        np.zeros((8, 0, 3), np.uint8),
        None,
        [[[0, 0, 0]]],
    ],
    ids=["float32", "int64", "bool", "2d", "1-channel", "rgba", "batch", "no-rows", "no-columns", "none", "list"],
)
@pytest.mark.parametrize("method", ["logits", "scores", "predict"])
def test_bad_images_are_a_tseg_error(segmenter, image, method):
    with pytest.raises(TsegError, match=r"\(H, W, 3\) uint8"):
        getattr(segmenter, method)(image)


def test_model_without_tseg_metadata_is_refused(tmp_path):
    path = write_colour_model(tmp_path / "plain.onnx", props={})
    with pytest.raises(TsegError, match="no tseg metadata"):
        Segmenter(path, device="cpu")


def test_missing_or_non_onnx_files_are_refused(tmp_path):
    with pytest.raises(TsegError, match="not found"):
        Segmenter(tmp_path / "missing.onnx", device="cpu")
    (tmp_path / "fake.onnx").write_bytes(b"not a protobuf at all")
    with pytest.raises(TsegError, match="fake.onnx is not an ONNX model"):
        Segmenter(tmp_path / "fake.onnx", device="cpu")


def test_model_whose_outputs_are_not_its_classes_is_refused(tmp_path):
    """Six output channels for four classes: labels 4 and 5 would not be classes (issue 9, item 3)."""
    path = write_colour_model(tmp_path / "six.onnx", output_channels=6)
    with pytest.raises(TsegError, match="4"):
        segmenter = Segmenter(path, device="cpu")
        segmenter.predict(image_of((10, 10)))  # refused when opened, or at the latest on the first run


@pytest.mark.parametrize("binding, crf_device, tta, expected", [
    (True, "cuda", None, True),
    (False, "cuda", None, False),  # the model on the CPU or OpenVINO: its output is on the host
    (True, "cpu", None, False),  # the CPU CRF reads host logits
    (True, "cuda", "views", False),  # TTA averages the views' softmax on the host
    (True, None, None, False),  # no CRF: the upsampled argmax is the host's
])
def test_logits_stay_on_the_gpu_only_for_the_cuda_crf_of_a_cuda_model(binding, crf_device, tta, expected):
    from types import SimpleNamespace

    segmenter = Segmenter.__new__(Segmenter)  # the rule alone, without a model or a GPU
    segmenter._runner = SimpleNamespace(uses_binding=binding)
    segmenter.crf = None if crf_device is None else SimpleNamespace(device=crf_device)
    segmenter.tta = tta
    assert segmenter.logits_on_device is expected
