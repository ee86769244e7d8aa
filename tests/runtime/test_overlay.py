"""Overlay pictures: blending, the legend of the classes present below the photo, tiny and huge images, files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tseg.runtime.errors import TsegError
from tseg.runtime.segment.legend import MIN_TEXT
from tseg.runtime.segment.overlay import blend_labels, overlay_labels, save_overlay

CLASSES = ("Background", "Metal", "Paper", "Glass", "Ünïcode 玻璃")
# Colours that never occur in the test images (grey) nor in the legend's black and white.
PALETTE = ((0, 0, 0), (250, 10, 10), (10, 250, 10), (10, 10, 250), (250, 10, 250))


def scene(height: int, width: int, present: tuple[int, ...] = (0, 1, 3)) -> tuple[np.ndarray, np.ndarray]:
    """A grey image and labels in vertical stripes of the ``present`` classes."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[::2, ::3] = 90
    stripes = np.array_split(np.arange(width), len(present))
    labels = np.zeros((height, width), np.uint8)
    for label, cols in zip(present, stripes, strict=True):
        labels[:, cols] = label
    return image, labels


def colour_found(picture: np.ndarray, rgb: tuple[int, int, int]) -> bool:
    return bool(np.all(picture == np.asarray(rgb, np.uint8), axis=2).any())


@pytest.mark.parametrize("alpha", [0.0, 0.25, 0.5, 0.8, 1.0])
def test_blend_is_the_weighted_mean_of_image_and_class_colour(alpha):
    image, labels = scene(20, 30)
    image[3, 4] = (255, 0, 17)
    blended = blend_labels(image, labels, PALETTE, alpha=alpha)
    expected = (1 - alpha) * image + alpha * np.asarray(PALETTE, np.float64)[labels]
    assert blended.dtype == np.uint8 and blended.shape == image.shape
    assert np.abs(blended.astype(np.float64) - expected).max() <= 1.0
    if alpha in (0.0, 1.0):
        np.testing.assert_array_equal(blended, image if alpha == 0 else np.asarray(PALETTE, np.uint8)[labels])


def test_blend_in_bands_equals_blend_at_once():
    """Row bands (bounded memory) must not change a pixel: compare with a one-shot float blend."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (700, 33, 3), dtype=np.uint8)
    labels = rng.integers(0, 5, (700, 33)).astype(np.uint8)
    blended = blend_labels(image, labels, PALETTE, alpha=0.5)
    weight = 128
    once = (image.astype(np.uint32) * (256 - weight) + np.asarray(PALETTE, np.uint32)[labels] * weight + 128) >> 8
    np.testing.assert_array_equal(blended, once.astype(np.uint8))


def legend_of(picture: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The part of an overlay below the photo, after checking the photo's pixels are the blend's."""
    height, width = image.shape[:2]
    assert picture.dtype == np.uint8 and picture.shape[0] > height and picture.shape[1] >= width
    return picture[height:]


def test_legend_goes_below_the_photo_and_leaves_its_pixels_alone():
    image, labels = scene(300, 400, present=(0, 1, 3))
    picture = overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.3, legend=True)
    assert picture.shape[1] == 400  # the legend wraps to the photo's width
    np.testing.assert_array_equal(picture[:300], blend_labels(image, labels, PALETTE, alpha=0.3))
    np.testing.assert_array_equal(
        overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.3, legend=False), picture[:300]
    )


def test_legend_shows_the_swatches_and_names_of_the_classes_present_only():
    image, labels = scene(300, 400, present=(0, 1, 3))
    legend = legend_of(overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.0), image)
    assert colour_found(legend, PALETTE[1]) and colour_found(legend, PALETTE[3])
    assert not colour_found(legend, PALETTE[2]) and not colour_found(legend, PALETTE[4])
    rows, cols = np.nonzero(np.all(legend == np.asarray(PALETTE[3], np.uint8), axis=2))
    name = legend[rows.min() : rows.max() + 1, cols.max() + 2 :]
    assert (name.max(axis=2) < 100).sum() > 20  # "Glass" in dark letters beside its swatch
    # More classes present: a taller legend (it wraps), with every swatch.
    image5, labels5 = scene(300, 400, present=(0, 1, 2, 3, 4))
    more = legend_of(overlay_labels(image5, labels5, classes=CLASSES, palette=PALETTE, alpha=0.0), image5)
    assert more.shape[0] > legend.shape[0]
    assert all(colour_found(more, PALETTE[label]) for label in range(1, 5))


@pytest.mark.parametrize("size", [(1, 1), (1, 300), (300, 1), (5, 7), (12, 12), (40, 25), (200, 150)])
def test_small_photos_get_a_legend_at_the_smallest_legible_size(size):
    image, labels = scene(*size, present=(0, 4) if size[1] > 1 else (4,))
    picture = overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.5)
    np.testing.assert_array_equal(picture[: size[0], : size[1]], blend_labels(image, labels, PALETTE, alpha=0.5))
    legend = legend_of(picture, image)
    rows, cols = np.nonzero(np.all(legend == np.asarray(PALETTE[4], np.uint8), axis=2))
    assert rows.max() - rows.min() + 1 >= MIN_TEXT - 2  # a swatch as tall as the text: not clipped
    assert cols.max() < legend.shape[1]
    if picture.shape[1] > size[1]:  # widened for the legend: the photo's right is plain background
        assert (picture[: size[0], size[1]:] == 255).all()


def test_a_big_photo_gets_a_legend_scaled_to_it():
    image, labels = scene(3000, 4000, present=(0, 2))
    picture = overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.0)
    assert picture.shape[1] == 4000 and picture.shape[0] > 3000
    np.testing.assert_array_equal(picture[:3000], image)
    swatch = np.all(legend_of(picture, image) == np.asarray(PALETTE[2], np.uint8), axis=2)
    rows, cols = np.nonzero(swatch)
    assert rows.max() - rows.min() + 1 >= 3000 // 24 - 2  # about 1/24 of the short side, not 14 px


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".JPEG"])
def test_save_overlay_writes_the_picture_atomically(tmp_path, suffix):
    image, labels = scene(60, 80)
    path = tmp_path / "out" / f"pic{suffix}"
    save_overlay(path, image, labels, CLASSES, PALETTE, alpha=0.4)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left
    expected = overlay_labels(image, labels, classes=CLASSES, palette=PALETTE, alpha=0.4)
    with Image.open(path) as img:
        assert img.format == ("PNG" if suffix == ".png" else "JPEG") and img.size == expected.shape[1::-1]
        written = np.asarray(img.convert("RGB"))
    if suffix == ".png":
        np.testing.assert_array_equal(written, expected)
    else:
        assert np.abs(written.astype(int) - expected).mean() < 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"path": "pic.gif"}, "need a file ending in .jpg"),
        ({"labels": np.zeros((60, 81), np.uint8)}, "integer labels the image's size"),
        ({"labels": np.full((60, 80), 5, np.uint8)}, r"labels must be in 0..4"),
        ({"labels": np.zeros((60, 80), np.float32)}, "integer labels"),
        ({"image": np.zeros((60, 80), np.uint8)}, r"need an \(H, W, 3\) uint8 image"),
        ({"alpha": 1.5}, "alpha must be a number in 0..1"),
        ({"classes": CLASSES[:3]}, "one class name per palette colour"),
    ],
)
def test_bad_inputs_are_one_line_and_write_nothing(tmp_path, change, message):
    image, labels = scene(60, 80)
    args = {"path": "pic.png", "image": image, "labels": labels, "classes": CLASSES, "palette": PALETTE,
            "alpha": 0.5} | change
    with pytest.raises(TsegError, match=message):
        save_overlay(tmp_path / args.pop("path"), **args)
    assert list(tmp_path.iterdir()) == []
