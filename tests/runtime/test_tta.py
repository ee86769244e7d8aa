"""Test-time augmentation: settings, the averaged softmax, un-flipping, fixed-size graphs, the CRF after TTA."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.onnx_models import (
    IR_VERSION,
    OPSET,
    colour_blocks_image,
    colour_metadata,
    colour_weights,
    write_colour_model,
)
from tseg.runtime import CrfParams, Segmenter, TsegError, TtaSettings
from tseg.runtime.images import preprocess
from tseg.runtime.scores import resize_scores, softmax
from tseg.runtime.segment.tta import add_upsampled_probs, logits_from_probs, view_size
from tseg.runtime.segment.upsample import upsample_probs

META = colour_metadata()


def write_shift_model(path: Path) -> Path:
    """The colour model looking one pixel to the right: logits[x] = colour(input[x + 1]).

    Not flip-equivariant: mirrored, it looks one pixel to the left.
    """
    weight, bias = colour_weights(META)
    kernel = np.zeros((4, 3, 1, 3), np.float32)
    kernel[:, :, 0, 2] = weight[:, :, 0, 0]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "weight", "bias"], ["logits"], kernel_shape=[1, 3], pads=[0, 1, 0, 1])],
        "shift_model",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 4, "height", "width"])],
        initializer=[numpy_helper.from_array(kernel, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    helper.set_model_props(model, META.to_props())
    onnx.save(model, str(path))
    return path


def shift_logits(x: np.ndarray) -> np.ndarray:
    """The shift model in NumPy: (3, h, w) input -> (4, h, w) logits."""
    weight, bias = colour_weights(META)
    right = np.pad(x, ((0, 0), (0, 0), (0, 1)))[:, :, 1:]
    return np.einsum("ck,khw->chw", weight[:, :, 0, 0], right) + bias[:, None, None]


def colour_logits_at(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    weight, bias = colour_weights(META)
    x = preprocess(image, size=size, mean=META.mean, std=META.std)
    return np.einsum("ck,khw->chw", weight[:, :, 0, 0], x) + bias[:, None, None]


def asymmetric_image(seed: int = 0, size: tuple[int, int] = (45, 70)) -> np.ndarray:
    image = colour_blocks_image(np.random.default_rng(seed), *size)
    assert not np.array_equal(image, image[:, ::-1])
    return image


# ----------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("tta", "scales", "expected"),
    [
        (None, None, None),
        ("none", "1", None),
        ("", None, None),
        ("hflip", None, TtaSettings(hflip=True)),
        (" HFlip ", "1.0", TtaSettings(hflip=True)),
        (None, "0.75,1,1.25", TtaSettings(scales=(0.75, 1.0, 1.25))),
        ("hflip", " 0.5 , 2 ", TtaSettings(hflip=True, scales=(0.5, 2.0))),
    ],
)
def test_parse_reads_the_command_line(tta, scales, expected):
    assert TtaSettings.parse(tta, scales) == expected


@pytest.mark.parametrize(
    ("tta", "scales", "message"),
    [
        ("vflip", None, "tta: unknown mode 'vflip'; valid: hflip"),
        (None, "", "tta_scales: need comma-separated numbers"),
        (None, "1,,2", "tta_scales: need comma-separated numbers"),
        (None, "a,b", "tta_scales: need comma-separated numbers"),
        (None, "\u0661", "tta_scales: need comma-separated numbers"),  # Arabic-Indic one: float() takes it
        (None, "0", "in 0.1..4.0"),
        (None, "-1", "in 0.1..4.0"),
        (None, "5", "in 0.1..4.0"),
        (None, "nan", "finite"),
        (None, "inf", "finite"),
        (None, "1,1", "distinct"),
        (None, ",".join(["1", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6", "1.7", "1.8"]), "1 to 8"),
    ],
)
def test_parse_refuses_bad_text_in_one_line(tta, scales, message):
    with pytest.raises(TsegError, match=message.replace("(", r"\(").replace(".", r"\.")) as caught:
        TtaSettings.parse(tta, scales)
    assert "\n" not in str(caught.value) and "--" not in str(caught.value)  # Python's words; the CLI names flags
    if message.startswith(("tta:", "tta_scales:")):
        assert caught.value.parameter == message.split(":")[0]


@pytest.mark.parametrize("kwargs", [{"hflip": "yes"}, {"scales": 1.0}, {"scales": "1"}, {"scales": ()}])
def test_settings_of_the_wrong_kind_are_refused(kwargs):
    with pytest.raises(TsegError, match="TTA"):
        TtaSettings(**kwargs)


def test_views_and_their_sizes():
    assert TtaSettings(hflip=True, scales=(0.5, 1)).views == ((0.5, False), (0.5, True), (1.0, False), (1.0, True))
    assert view_size((24, 40), 0.75) == (18, 30) and view_size((24, 40), 0.01) == (1, 1)


# ----------------------------------------------------------------------------- the averaged softmax


def test_hflip_on_a_flip_equivariant_model_changes_no_label(colour_onnx):
    """A 1x1 convolution commutes with mirroring: the mirrored view, mirrored back, is the plain view."""
    plain = Segmenter(colour_onnx, device="cpu")
    flipped = Segmenter(colour_onnx, device="cpu", tta=TtaSettings(hflip=True))
    for seed in range(4):
        image = asymmetric_image(seed, (30 + 11 * seed, 70 - 9 * seed))
        expected = plain.predict(image, probs=True)
        got = flipped.predict(image, probs=True)
        np.testing.assert_array_equal(got.labels, expected.labels)
        np.testing.assert_allclose(got.probs, expected.probs, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 1), (24, 40), (37, 53), (101, 17), (12, 20)])
@pytest.mark.parametrize("band", [1, 5, 128])
def test_probabilities_added_in_bands_are_upsample_probs_bit_for_bit(size, band):
    logits = np.random.default_rng(sum(size)).normal(0, 3, (4, 24, 40)).astype(np.float32)
    total = np.full((4, *size), 0.25, np.float32)
    add_upsampled_probs(total, logits, band=band)
    np.testing.assert_array_equal(total, np.float32(0.25) + upsample_probs(logits, size))


def test_the_mirrored_view_is_mirrored_back(tmp_path):
    """On a model that is not flip-equivariant, only the un-flipped average matches."""
    segmenter = Segmenter(write_shift_model(tmp_path / "shift.onnx"), device="cpu", tta=TtaSettings(hflip=True))
    image = asymmetric_image(1)
    size = image.shape[:2]
    x = preprocess(image, size=META.input_size, mean=META.mean, std=META.std)
    plain = softmax(resize_scores(shift_logits(x), size))
    mirrored_back = softmax(resize_scores(shift_logits(x[:, :, ::-1])[:, :, ::-1], size))
    not_unflipped = softmax(resize_scores(shift_logits(x[:, :, ::-1]), size))
    probs = segmenter.predict(image, probs=True).probs
    np.testing.assert_allclose(probs, (plain + mirrored_back) / 2, rtol=1e-5, atol=1e-6)
    assert np.abs(probs - (plain + not_unflipped) / 2).max() > 0.1
    assert np.abs(probs - plain).max() > 0.01  # the model is not equivariant: TTA changed something


def test_scales_average_the_softmax_of_each_resized_view(colour_onnx):
    settings = TtaSettings(hflip=True, scales=(0.5, 1.0, 1.25))
    segmenter = Segmenter(colour_onnx, device="cpu", tta=settings)
    image = asymmetric_image(2, (57, 83))
    views = [softmax(resize_scores(colour_logits_at(image, view_size(META.input_size, s)), image.shape[:2]))
             for s in settings.scales]
    expected = np.mean(views, axis=0)
    prediction = segmenter.predict(image, probs=True)
    np.testing.assert_allclose(prediction.probs, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(prediction.probs.sum(axis=0), 1.0, rtol=1e-5)
    assert prediction.labels.shape == image.shape[:2]
    top2 = np.sort(expected, axis=0)[-2:]
    decided = top2[1] - top2[0] > 1e-4
    np.testing.assert_array_equal(prediction.labels[decided], expected.argmax(axis=0)[decided])


def test_tta_on_a_list_is_tta_on_each_image(colour_onnx):
    segmenter = Segmenter(colour_onnx, device="cpu", tta=TtaSettings(hflip=True, scales=(0.75, 1.0)), batch_size=2)
    batch = [asymmetric_image(seed, (33 + seed, 40 + 3 * seed)) for seed in range(3)]
    for prediction, image in zip(segmenter.predict(batch), batch, strict=True):
        np.testing.assert_array_equal(prediction.labels, segmenter.predict_tta(image).labels)


def test_predict_tta_without_settings_is_refused(colour_onnx):
    with pytest.raises(TsegError, match="without tta"):
        Segmenter(colour_onnx, device="cpu").predict_tta(asymmetric_image())


def test_scales_on_a_graph_of_fixed_size_are_one_line(tmp_path):
    model = onnx.load(str(write_colour_model(tmp_path / "m.onnx")))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[2].dim_value = 24
        value.type.tensor_type.shape.dim[3].dim_value = 40
    onnx.save(model, str(tmp_path / "fixed.onnx"))
    Segmenter(tmp_path / "fixed.onnx", device="cpu", tta=TtaSettings(hflip=True))  # scale 1 fits
    with pytest.raises(TsegError, match=r"fixed.onnx: TTA scale 0.75 needs a 18x30 input, .* only 24x40") as caught:
        Segmenter(tmp_path / "fixed.onnx", device="cpu", tta=TtaSettings(scales=(1.0, 0.75)))
    assert "\n" not in str(caught.value)


def test_the_crf_runs_on_the_averaged_probabilities(colour_onnx):
    params = CrfParams(iterations=3)
    settings = TtaSettings(hflip=True, scales=(0.75, 1.0))
    averaged = Segmenter(colour_onnx, device="cpu", tta=settings)
    refined = Segmenter(colour_onnx, device="cpu", tta=settings, crf=params)
    image = asymmetric_image(3, (40, 60))
    probs = averaged.predict(image, probs=True).probs
    prediction = refined.predict(image, probs=True)
    np.testing.assert_array_equal(prediction.probs, probs)
    np.testing.assert_array_equal(prediction.labels, params.refine(logits_from_probs(probs), image))
    np.testing.assert_allclose(softmax(logits_from_probs(probs)), probs, rtol=1e-5, atol=1e-7)


def test_tta_views_run_batch_size_at_a_time(colour_onnx, monkeypatch):
    """Every view goes through run_batch; no run holds more than batch_size inputs."""
    segmenter = Segmenter(colour_onnx, device="cpu", tta=TtaSettings(hflip=True, scales=(0.75, 1.0)), batch_size=3)
    runs = []
    run_batch = segmenter.run_batch
    monkeypatch.setattr(segmenter, "run_batch", lambda batch, **kw: runs.append(len(batch)) or run_batch(batch, **kw))
    images = [asymmetric_image(seed, (33 + seed, 40)) for seed in range(3)]
    segmenter.predict(images)
    assert runs == [3, 3, 3, 3]  # 3 images x 2 views at each of 2 scales
