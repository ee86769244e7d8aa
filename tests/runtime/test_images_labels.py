import numpy as np
import pytest
from PIL import Image

from tseg.runtime.errors import TsegError
from tseg.runtime.images import find_images, normalize, read_image, resize_labels
from tseg.runtime.labels import labels_from_scores, read_label_png, resize_scores, save_label_png
from tseg.runtime.metadata import ModelMetadata, default_palette


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA"])
def test_read_image_any_mode_gives_rgb_uint8(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    img = (
        base.convert(mode)
        if mode != "I;16"
        else Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    )
    path = tmp_path / ("x.tiff" if mode in ("I;16", "CMYK") else "x.png")
    img.save(path)
    out = read_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8


def test_read_image_errors(tmp_path):
    with pytest.raises(TsegError, match="not found"):
        read_image(tmp_path / "missing.jpg")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(TsegError, match="cannot read image"):
        read_image(tmp_path / "bad.png")


def test_resize_scores_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    scores = np.random.default_rng(1).normal(size=(5, 13, 17)).astype(np.float32)
    for size in [(40, 29), (13, 17), (7, 50)]:
        expected = torch.nn.functional.interpolate(
            torch.from_numpy(scores)[None], size=size, mode="bilinear", align_corners=False
        )[0].numpy()
        np.testing.assert_allclose(resize_scores(scores, size), expected, atol=1e-5)


def test_labels_from_scores_and_palette_png_round_trip(tmp_path):
    scores = np.zeros((3, 4, 4), np.float32)
    scores[2, :, 2:] = 1
    labels = labels_from_scores(scores, (8, 8))
    assert labels.shape == (8, 8) and set(np.unique(labels)) == {0, 2}
    save_label_png(tmp_path / "a" / "l.png", labels, palette=default_palette(3))
    np.testing.assert_array_equal(read_label_png(tmp_path / "a" / "l.png"), labels)
    assert Image.open(tmp_path / "a" / "l.png").mode == "P"


def test_resize_labels_nearest_keeps_values():
    labels = np.arange(16, dtype=np.uint8).reshape(4, 4)
    up = resize_labels(labels, (8, 8))
    assert set(np.unique(up)) == set(range(16))
    np.testing.assert_array_equal(resize_labels(up, (4, 4)), labels)


def test_normalize_shape_and_values():
    image = np.full((2, 3, 3), 255, np.uint8)
    out = normalize(image, mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [1.0, 2.0, 0.5])


def test_find_images(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    for name in ["d/b.jpg", "d/sub/a.PNG", "d/notes.txt", "c.png"]:
        (tmp_path / name).write_bytes(b"")
    found = find_images([tmp_path / "d", tmp_path / "c.png"])
    assert [str(r) for _, r in found] == ["b.jpg", "sub/a.PNG", "c.png"]
    with pytest.raises(TsegError, match="no such file"):
        find_images([tmp_path / "nope"])


def test_metadata_round_trip_and_errors():
    meta = ModelMetadata(
        classes=("bg", "a"),
        palette=default_palette(2),
        mean=(0.1, 0.2, 0.3),
        std=(1.0, 1.0, 1.0),
        input_size=(32, 48),
        model_name="m",
        tseg_version="0.1.0",
        extra={"epoch": 3},
    )
    assert ModelMetadata.from_props(meta.to_props()) == meta
    with pytest.raises(TsegError, match="has no tseg metadata"):
        ModelMetadata.from_props({}, source="x.onnx")
    with pytest.raises(TsegError, match="one palette colour per class"):
        ModelMetadata(
            classes=("a", "b", "c"),
            palette=default_palette(2),
            mean=(0, 0, 0),
            std=(1, 1, 1),
            input_size=(8, 8),
            model_name="m",
            tseg_version="0",
        )
