import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tseg.runtime.data.label_png import read_label_png, save_label_png
from tseg.runtime.errors import TsegError
from tseg.runtime.images import find_images, normalize, read_image, resize_labels, to_rgb_array
from tseg.runtime.model.metadata import ModelMetadata, default_palette
from tseg.runtime.pixel_limit import (
    DEFAULT_MAX_IMAGE_PIXELS,
    MAX_IMAGE_PIXELS_ENV,
    image_pixel_limit,
    max_image_pixels,
    parse_pixel_limit,
    pixel_limit_option,
    set_max_image_pixels,
)
from tseg.runtime.scores import labels_from_scores, resize_scores


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "I;16", "CMYK", "LA", "1", "F", "I"])
def test_read_image_any_mode_gives_rgb_uint8(tmp_path, mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8))
    img = (
        base.convert(mode)
        if mode != "I;16"
        else Image.fromarray(rng.integers(0, 65535, (20, 30), dtype=np.uint16))
    )
    path = tmp_path / ("x.tiff" if mode in ("I;16", "CMYK", "F", "I") else "x.png")
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
    import torch  # the dev extra has it: the reference for the bilinear grid

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


def _save(path, image, **kwargs):
    image.save(path, **kwargs)
    return path


def test_image_over_the_pixel_limit_is_one_line_saying_how_to_raise_it(tmp_path):
    path = _save(tmp_path / "big.png", Image.new("RGB", (30, 20)))
    with image_pixel_limit(599):
        with pytest.raises(TsegError) as caught:
            read_image(path)
    message = str(caught.value)
    assert "600 pixels is over the limit of 599" in message
    assert "raise the limit with tseg.runtime.set_max_image_pixels(600) (or the environment variable" in message
    assert "TSEG_MAX_IMAGE_PIXELS" in message and "\n" not in message and "--" not in message
    with pixel_limit_option("599", what="--max-image-pixels"):  # a CLI's block: its flag (in lines shown as they are)
        with pytest.raises(TsegError, match=r"raise the limit with --max-image-pixels 600 \(or the environment"):
            read_image(path)
    with pytest.raises(TsegError, match=r"set_max_image_pixels\(600\)"), image_pixel_limit(599):
        read_image(path)  # the block's spelling ends with it
    with image_pixel_limit(600):
        assert read_image(path).shape == (20, 30, 3)
    with image_pixel_limit(None):
        assert read_image(path).shape == (20, 30, 3)


def test_pixel_limit_from_the_environment_and_its_errors(tmp_path, monkeypatch):
    path = _save(tmp_path / "big.png", Image.new("RGB", (30, 20)))
    assert max_image_pixels() == DEFAULT_MAX_IMAGE_PIXELS == 89_478_485
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "500")
    with pytest.raises(TsegError, match="over the limit of 500"):
        read_image(path)
    with image_pixel_limit(1000):  # the setting wins over the environment
        read_image(path)
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "None")
    assert max_image_pixels() is None
    monkeypatch.setenv(MAX_IMAGE_PIXELS_ENV, "2e8")
    with pytest.raises(TsegError, match=r"environment variable TSEG_MAX_IMAGE_PIXELS: need a positive number"):
        read_image(path)
    assert parse_pixel_limit("200_000_000", what="x") == 200_000_000
    for bad in ("0", "-5", "", "1.5", "lots"):
        with pytest.raises(TsegError, match="--max-image-pixels: need a positive number of pixels or 'none'"):
            parse_pixel_limit(bad, what="--max-image-pixels")
    for bad in (0, -1, True, 1.5, "100"):
        with pytest.raises(TsegError, match="need a positive integer or None"):
            set_max_image_pixels(bad)


def test_decompression_bomb_beyond_pillows_own_limit_is_one_line(tmp_path, recwarn):
    # 1-bit PNGs of zeros: a few kB on disk, 100 and 180 Mpx once decoded.
    for side in (10_000, 13_400):  # Pillow warns above 89.5 Mpx and refuses above twice that
        path = _save(tmp_path / f"bomb{side}.png", Image.new("1", (side, side)))
        with pytest.raises(TsegError, match=rf"{side * side} pixels is over the limit of 89478485"):
            read_image(path)
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_raising_the_limit_above_pillows_lets_pillow_open_the_image(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # as if Pillow's limit were 100 pixels
    path = _save(tmp_path / "x.png", Image.new("RGB", (30, 20)))  # 600 > 2 x 100: Pillow alone refuses it
    with image_pixel_limit(150):
        with pytest.raises(TsegError, match="600 pixels is over the limit of 150"):
            read_image(path)
    with image_pixel_limit(1000):
        assert read_image(path).shape == (20, 30, 3)


def test_truncated_and_empty_files_are_one_line(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("t.png", "t.jpg"):
        full = _save(tmp_path / f"full{name}", Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)))
        data = full.read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(TsegError, match=rf"cannot read image .*{name}") as caught:
            read_image(tmp_path / name)
        assert "\n" not in str(caught.value)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(TsegError, match="cannot read image"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(TsegError, match="is a folder, not a file"):
        read_image(tmp_path)


def test_zero_pixel_image_is_refused(tmp_path, monkeypatch):
    # Pillow cannot write a 0x0 file; an opened image that reports 0x0 stands in for one.
    path = _save(tmp_path / "x.png", Image.new("RGB", (3, 2)))
    original_open = Image.open

    def open_empty(*args, **kwargs):
        img = original_open(*args, **kwargs)
        img._size = (0, 0)
        return img

    monkeypatch.setattr(Image, "open", open_empty)
    with pytest.raises(TsegError, match=r"it has no pixels \(0x0\)"):
        read_image(path)


@pytest.mark.parametrize(
    ("mode", "pixel", "expected"),
    [
        ("1", 1, (255, 255, 255)),
        ("F", 0.5, (255, 255, 255)),  # the brightest pixel becomes 255
        ("I", 70_000, (255, 255, 255)),
        ("I;16B", 4000, (255, 255, 255)),
        ("LA", (200, 0), (0, 0, 0)),  # fully transparent: black
        ("PA", (3, 255), None),
        ("RGBa", (10, 20, 30, 255), (10, 20, 30)),
        ("HSV", (0, 0, 255), (255, 255, 255)),
        ("LAB", (100, 128, 128), None),
        ("YCbCr", (128, 128, 128), (128, 128, 128)),
    ],
)
def test_exotic_modes_give_rgb(mode, pixel, expected):
    img = Image.new(mode, (5, 4))
    img.putpixel((1, 2), pixel)
    out = to_rgb_array(img)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    if expected is not None:
        assert tuple(out[2, 1]) == pytest.approx(expected, abs=2)


def test_float_image_with_nan_is_refused(tmp_path):
    path = tmp_path / "nan.tiff"
    Image.fromarray(np.array([[0.5, np.nan]], dtype=np.float32)).save(path)
    with pytest.raises(TsegError, match=r"cannot read image .*nan\.tiff: a F image with NaN"):
        read_image(path)


def test_palette_transparency_goes_onto_black(tmp_path):
    img = Image.new("P", (4, 4), 1)
    img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    img.info["transparency"] = 1
    path = _save(tmp_path / "t.png", img, transparency=1)
    assert (read_image(path) == 0).all()


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animation_reads_its_first_frame(tmp_path, suffix):
    frames = [Image.new("RGB", (8, 6), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    path = tmp_path / f"anim{suffix}"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, lossless=True)
    assert Image.open(path).n_frames == 2
    out = read_image(path)
    assert out.shape == (6, 8, 3) and out[..., 0].min() > 200 and out[..., 2].max() < 50


def _jpeg_with_orientation(path, orientation):
    stored = np.zeros((20, 30, 3), np.uint8)
    stored[:8, :10] = (255, 0, 0)  # a red block in the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path


def test_exif_orientation_6_is_applied_only_when_asked(tmp_path):
    path = _jpeg_with_orientation(tmp_path / "phone.jpg", 6)
    stored = read_image(path)
    assert stored.shape == (20, 30, 3) and stored[0, 0, 0] > 200
    upright = read_image(path, exif_transpose=True)
    assert upright.shape == (30, 20, 3)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))  # 6: turn 90 degrees clockwise to view
    assert upright[0, -1, 0] > 200 and upright[0, 0, 0] < 50


def test_bad_exif_orientation_gives_stored_pixels_or_one_line(tmp_path):
    path = _jpeg_with_orientation(tmp_path / "odd.jpg", 9)  # no such orientation: the pixels stay as stored
    np.testing.assert_array_equal(read_image(path, exif_transpose=True), read_image(path))
    corrupt = b"Exif\x00\x00MM\x00\x2a\x00\x00\x00\x08\x00\x01\x01\x12\x00\x03\x00\x00\x00\x01\x00\x09\x00\x00"
    path = _save(tmp_path / "corrupt.jpg", Image.new("RGB", (30, 20)), exif=corrupt)
    assert read_image(path).shape == (20, 30, 3)  # EXIF unused: no complaint
    with pytest.raises(TsegError, match=r"EXIF orientation of .*corrupt\.jpg: its EXIF data is corrupt"):
        read_image(path, exif_transpose=True)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(1, 40),
    width=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
    mean=st.tuples(*[st.floats(-2, 2, width=32)] * 3),
    std=st.tuples(*[st.floats(0.0625, 4, width=32)] * 3),
)
def test_normalize_is_the_per_pixel_formula_bit_for_bit_and_c_contiguous(height, width, seed, mean, std):
    image = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    chw = image.transpose(2, 0, 1).astype(np.float32) * np.float32(1.0 / 255.0)
    expected = (chw - np.asarray(mean, np.float32)[:, None, None]) / np.asarray(std, np.float32)[:, None, None]
    got = normalize(image, mean=mean, std=std)
    assert got.dtype == np.float32 and got.flags["C_CONTIGUOUS"] and got.shape == (3, height, width)
    np.testing.assert_array_equal(got, expected)


def test_label_png_errors_are_tseg_errors_naming_the_parameter(tmp_path):
    from tseg.runtime.data.label_png import read_label_png, save_label_png

    with pytest.raises(TsegError, match=r"^labels: a palette PNG holds labels 0..255, got 0..300"):
        save_label_png(tmp_path / "x.png", np.array([[0, 300]], np.int32), palette=[(0, 0, 0)])
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    (tmp_path / "text.png").write_text("not a png")
    cases = (("rgb.png", "got mode RGB"), ("text.png", "cannot read the label PNG"), ("no.png", "not found"))
    for name, message in cases:
        with pytest.raises(TsegError, match=message):
            read_label_png(tmp_path / name)
