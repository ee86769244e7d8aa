"""The Python API: Segmenter.predict on arrays, paths, lists and iterables, and Prediction.

The model is the hand-made colour model (tests/onnx_models.py): its labels are known
in NumPy, so every prediction can be checked without trusting the runtime.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import tseg.runtime
from tests.onnx_models import COLOUR_CLASSES, colour_blocks_image, colour_labels, colour_metadata, write_colour_model
from tseg.runtime import CrfParams, Prediction, Segmenter, TsegError, TtaSettings, read_image
from tseg.runtime.data.label_png import read_label_png
from tseg.runtime.scores import labels_from_scores, resize_scores, softmax


@pytest.fixture
def segmenter(colour_onnx) -> Segmenter:
    return Segmenter(colour_onnx, device="cpu", threads=1, batch_size=3)


def images(count: int, seed: int = 0) -> list[np.ndarray]:
    """Images of different sizes (batching must not need equal sizes)."""
    rng = np.random.default_rng(seed)
    return [colour_blocks_image(rng, 20 + 7 * i, 31 + 5 * i) for i in range(count)]


def assert_colour_labels(prediction: Prediction, image: np.ndarray) -> None:
    expected, decided = colour_labels(image)
    assert prediction.labels.shape == image.shape[:2] and prediction.labels.dtype == np.uint8
    np.testing.assert_array_equal(prediction.labels[decided], expected[decided])
    assert decided.mean() > 0.9


def count_batches(segmenter: Segmenter, monkeypatch) -> list[int]:
    """Records the batch size of every model run."""
    sizes: list[int] = []
    run = segmenter._run_session

    def spy(batch):
        sizes.append(len(batch))
        return run(batch)

    monkeypatch.setattr(segmenter, "_run_session", spy)
    return sizes


def test_predict_on_an_array_gives_a_prediction(segmenter):
    image = images(1)[0]
    prediction = segmenter.predict(image)
    assert isinstance(prediction, Prediction)
    assert_colour_labels(prediction, image)
    assert prediction.classes == COLOUR_CLASSES == segmenter.classes
    assert prediction.palette == colour_metadata().palette == segmenter.palette
    assert prediction.image is image and prediction.source is None and prediction.probs is None


def test_predict_on_paths_reads_them_upright(segmenter, tmp_path):
    stored = images(1)[0]
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = tmp_path / "phone.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    for spelled in (path, str(path)):
        prediction = segmenter.predict(spelled)
        upright = read_image(path, exif_transpose=True)
        assert upright.shape == (stored.shape[1], stored.shape[0], 3)
        np.testing.assert_array_equal(prediction.image, upright)
        assert_colour_labels(prediction, upright)
        assert prediction.source == str(path)


def test_a_list_is_batched_and_gives_the_same_labels_as_one_by_one(segmenter, monkeypatch, tmp_path):
    inputs: list = images(7)
    Image.fromarray(inputs[4]).save(tmp_path / "four.png")
    inputs[4] = tmp_path / "four.png"
    one_by_one = [segmenter.predict(x) for x in inputs]
    sizes = count_batches(segmenter, monkeypatch)
    predictions = segmenter.predict(inputs)
    assert sizes == [3, 3, 1]
    assert isinstance(predictions, list) and len(predictions) == 7
    for batched, single in zip(predictions, one_by_one, strict=True):
        np.testing.assert_array_equal(batched.labels, single.labels)
        np.testing.assert_array_equal(batched.image, single.image)
    assert [p.source for p in predictions] == [None] * 4 + [str(tmp_path / "four.png")] + [None] * 2
    assert isinstance(segmenter.predict(tuple(inputs[:2])), list)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(count=st.integers(0, 9), batch_size=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_any_batch_size_gives_the_labels_of_one_image_at_a_time(colour_onnx, count, batch_size, seed):
    inputs = images(count, seed=seed)
    segmenter = Segmenter(colour_onnx, device="cpu", threads=1, batch_size=batch_size)
    single = Segmenter(colour_onnx, device="cpu", threads=1, batch_size=1)
    batched = segmenter.predict(inputs)
    assert len(batched) == count
    for prediction, image in zip(batched, inputs, strict=True):
        np.testing.assert_array_equal(prediction.labels, single.predict(image).labels)


def test_an_iterable_gives_a_lazy_iterator_with_a_batch_in_memory(segmenter, monkeypatch):
    source = images(8, seed=3)
    drawn = []

    def generate():
        for image in source:
            drawn.append(1)
            yield image

    sizes = count_batches(segmenter, monkeypatch)
    results = segmenter.predict(generate())
    assert not isinstance(results, list) and drawn == [] and sizes == []  # nothing ran yet
    first = next(results)
    assert len(drawn) == 3 and sizes == [3]  # one batch read, not the whole input
    rest = list(results)
    assert sizes == [3, 3, 2] and len(rest) == 7
    for prediction, image in zip([first, *rest], source, strict=True):
        assert_colour_labels(prediction, image)


def test_probs_are_the_softmax_of_the_upsampled_logits(segmenter):
    image = images(1, seed=5)[0]
    prediction = segmenter.predict(image, probs=True)
    expected = softmax(resize_scores(segmenter.logits(image), image.shape[:2]))
    assert prediction.probs.shape == (4, *image.shape[:2]) and prediction.probs.dtype == np.float32
    np.testing.assert_allclose(prediction.probs, expected, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(prediction.labels, labels_from_scores(prediction.probs))


def test_save_writes_a_palette_png_of_the_labels(segmenter, tmp_path):
    prediction = segmenter.predict(images(1)[0])
    prediction.save(tmp_path / "sub" / "out.png")
    np.testing.assert_array_equal(read_label_png(tmp_path / "sub" / "out.png"), prediction.labels)
    with Image.open(tmp_path / "sub" / "out.png") as png:
        assert png.mode == "P" and png.getpalette()[:12] == [c for rgb in prediction.palette for c in rgb]


def test_overlay_blends_the_labels_into_the_image(segmenter):
    image = images(1)[0]
    prediction = segmenter.predict(image)
    picture = prediction.overlay(alpha=1.0, legend=False)
    np.testing.assert_array_equal(picture, np.asarray(prediction.palette, np.uint8)[prediction.labels])
    np.testing.assert_array_equal(prediction.overlay(alpha=0.0, legend=False), image)
    with_legend = prediction.overlay(alpha=0.0)
    assert with_legend.shape[0] > image.shape[0] and with_legend.shape[1] >= image.shape[1]  # a strip below
    np.testing.assert_array_equal(with_legend[: image.shape[0], : image.shape[1]], image)
    bare = Prediction(labels=prediction.labels, classes=prediction.classes, palette=prediction.palette)
    with pytest.raises(TsegError, match="no image"):
        bare.overlay()


def test_the_stages_compose_to_predict(segmenter):
    batch_images = images(4, seed=7)
    batch = np.stack([segmenter.preprocess(image) for image in batch_images])
    assert batch.shape == (4, 3, 24, 40) and batch.dtype == np.float32
    logits = segmenter.run_batch(batch)
    assert logits.shape == (4, 4, 24, 40)
    for item, image in zip(logits, batch_images, strict=True):
        np.testing.assert_array_equal(item, segmenter.logits(image))
        np.testing.assert_array_equal(segmenter.postprocess(item, image).labels, segmenter.predict(image).labels)


@pytest.mark.parametrize(
    "batch",
    [np.zeros((2, 3, 8, 8), np.float64), np.zeros((3, 8, 8), np.float32), np.zeros((2, 4, 8, 8), np.float32), None],
    ids=["float64", "3d", "4-channels", "none"],
)
def test_run_batch_refuses_what_preprocess_does_not_make(segmenter, batch):
    with pytest.raises(TsegError, match=r"need an \(N, 3, h, w\) float32 batch"):
        segmenter.run_batch(batch)


def test_a_bad_item_is_named_by_its_index_or_path(segmenter, tmp_path):
    good = images(1)[0]
    with pytest.raises(TsegError, match=r"^input 2: need an \(H, W, 3\) uint8 image"):
        segmenter.predict([good, good, np.zeros((4, 4), np.uint8), good])
    with pytest.raises(TsegError, match="^input 1: need an .* array or an image path, got int"):
        segmenter.predict([good, 7])
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TsegError, match="^input 1: cannot read image .*broken.jpg"):
        segmenter.predict([good, tmp_path / "broken.jpg"])
    with pytest.raises(TsegError, match="^input 0: image file not found: .*missing.png"):
        list(segmenter.predict(iter([tmp_path / "missing.png"])))
    for bad in (7, None, b"bytes", {"a": 1}):
        with pytest.raises(TsegError, match="need an .* array, an image path, or a list/iterable"):
            segmenter.predict(bad)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"batch_size": 2.0}, "batch_size"),
        ({"crf": {"iterations": 5}}, "need a CrfParams"),
        ({"tta": "hflip"}, "need a TtaSettings"),
    ],
)
def test_bad_settings_are_one_line(colour_onnx, kwargs, message):
    with pytest.raises(TsegError, match=message):
        Segmenter(colour_onnx, device="cpu", **kwargs)


def test_a_graph_with_a_fixed_batch_of_one_runs_one_image_at_a_time(tmp_path, monkeypatch):
    model = onnx.load(str(write_colour_model(tmp_path / "m.onnx")))
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(tmp_path / "one.onnx"))
    segmenter = Segmenter(tmp_path / "one.onnx", device="cpu", batch_size=8)
    assert segmenter.batch_size == 1
    sizes = count_batches(segmenter, monkeypatch)
    for prediction, image in zip(segmenter.predict(images(3)), images(3), strict=True):
        assert_colour_labels(prediction, image)
    assert sizes == [1, 1, 1]


def test_crf_predictions_are_the_crfs_labels(colour_onnx):
    params = CrfParams(iterations=3)
    plain = Segmenter(colour_onnx, device="cpu")
    refined = Segmenter(colour_onnx, device="cpu", crf=params, batch_size=2)
    batch = images(3, seed=11)
    changed = 0
    for prediction, image in zip(refined.predict(batch), batch, strict=True):
        np.testing.assert_array_equal(prediction.labels, params.refine(plain.scores(image), image))
        changed += int(np.count_nonzero(prediction.labels != plain.predict(image).labels))
    assert changed > 0, "the CRF ran: some labels differ from the model's own"


def test_tseg_runtime_exports_the_api_without_numba_or_torch():
    for name in ("Segmenter", "Prediction", "TtaSettings", "CrfParams", "read_image", "dense_crf", "TsegError"):
        assert name in tseg.runtime.__all__ and getattr(tseg.runtime, name) is not None
    assert TtaSettings is tseg.runtime.TtaSettings and read_image is tseg.runtime.read_image
    code = (
        "import sys, tseg.runtime; from tseg.runtime import Segmenter, Prediction, CrfParams, TtaSettings;"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'torch', 'llvmlite')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_segmenting_photos_never_imports_pycocotools(colour_onnx, photo_dir, tmp_path):
    code = (
        "import sys; from pathlib import Path; from tseg.runtime.infer.run import InferSettings, infer_paths;"
        f" infer_paths([Path({str(photo_dir)!r})], settings=InferSettings(model=Path({str(colour_onnx)!r}),"
        f" out=Path({str(tmp_path / 'out')!r}), progress=False));"
        " print(sorted(m for m in sys.modules if m.split('.')[0] in ('pycocotools', 'torch')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]" and any((tmp_path / "out").iterdir())
