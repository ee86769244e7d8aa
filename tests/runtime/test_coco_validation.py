"""Property-based tests of the COCO reader: against pycocotools on valid data, TsegError on invalid data.

The reference rule: label 0 is background, category k of the ``categories`` list is
label k + 1, and where annotations overlap the larger label wins (the label map is
the maximum over annotations of label * mask).
"""

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as mask_utils

from tseg.runtime.data.coco import CocoDataset, annotation_mask
from tseg.runtime.data.coco_checks import compressed_counts
from tseg.runtime.errors import TsegError

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

sizes = st.tuples(st.integers(1, 23), st.integers(1, 23))  # (height, width): small, often odd


def _runs(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE of a mask: run lengths over the column-major pixels, zeros first."""
    flat = mask.flatten(order="F")
    changes = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(edges).tolist()
    return [0, *runs] if flat[0] else runs


def _mask_from_runs(runs, height: int, width: int) -> np.ndarray:
    values = np.arange(len(runs)) % 2
    return np.repeat(values, runs).astype(np.uint8).reshape((height, width), order="F")


@st.composite
def polygons(draw, height: int, width: int):
    """1-2 polygons of 3-7 points anywhere within the margin the reader accepts."""
    count = draw(st.integers(1, 2))
    result = []
    for _ in range(count):
        points = draw(st.integers(3, 7))
        xs = st.floats(-width, 2 * width, allow_nan=False)
        ys = st.floats(-height, 2 * height, allow_nan=False)
        coords = draw(st.lists(st.tuples(xs, ys), min_size=points, max_size=points))
        result.append([float(v) for point in coords for v in point])
    return result


@st.composite
def annotations(draw, height: int, width: int):
    """(kind, segmentation, the mask it stands for or None for polygons)."""
    kind = draw(st.sampled_from(["polygon", "rle", "compressed"]))
    if kind == "polygon":
        return kind, draw(polygons(height, width)), None
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    mask = (np.random.default_rng(seed).random((height, width)) < density).astype(np.uint8)
    if kind == "rle":
        return kind, {"size": [height, width], "counts": _runs(mask)}, mask
    encoded = mask_utils.encode(np.asfortranarray(mask))
    return kind, {"size": [height, width], "counts": encoded["counts"].decode("ascii")}, mask


@st.composite
def datasets(draw):
    """A COCO dict of 1-3 images with 0-4 annotations each, and its categories in list order."""
    cat_ids = draw(st.lists(st.integers(0, 60), min_size=1, max_size=4, unique=True))
    categories = [{"id": cat_id, "name": f"class{cat_id}"} for cat_id in cat_ids]
    images, anns, expected_masks = [], [], []
    for index in range(draw(st.integers(1, 3))):
        height, width = draw(sizes)
        images.append({"id": 10 + index, "file_name": f"im{index}.png", "height": height, "width": width})
        for _ in range(draw(st.integers(0, 4))):
            kind, seg, mask = draw(annotations(height, width))
            cat_id = draw(st.sampled_from(cat_ids))
            anns.append({"id": len(anns) + 1, "image_id": 10 + index, "category_id": cat_id, "segmentation": seg})
            expected_masks.append(mask)
    return {"images": images, "categories": categories, "annotations": anns}, expected_masks


def _reference_label_map(data: dict, image: dict, expected_masks: list) -> np.ndarray:
    """The reference rule with pycocotools.mask called directly."""
    height, width = image["height"], image["width"]
    labels = {cat["id"]: index + 1 for index, cat in enumerate(data["categories"])}
    result = np.zeros((height, width), dtype=np.int64)
    for ann, truth in zip(data["annotations"], expected_masks, strict=True):
        if ann["image_id"] != image["id"]:
            continue
        seg = ann["segmentation"]
        if isinstance(seg, list):
            mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(seg, height, width)))
        elif isinstance(seg["counts"], list):
            mask = mask_utils.decode(mask_utils.frPyObjects(seg, height, width))
        else:
            mask = mask_utils.decode(seg)
        if truth is not None:
            np.testing.assert_array_equal(mask, truth)  # the RLE stands for the mask it was made from
        result = np.maximum(result, labels[ann["category_id"]] * mask.astype(np.int64))
    return result


@FAST
@given(datasets())
def test_label_maps_equal_pycocotools_and_the_reference_rule(case):
    data, expected_masks = case
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        for image in data["images"]:
            Image.new("RGB", (image["width"], image["height"])).save(root / image["file_name"])
        (root / "split.json").write_text(json.dumps(data))
        coco = CocoDataset(root / "split.json")
        assert coco.classes[1:] == tuple(cat["name"] for cat in data["categories"])
        for index, image in enumerate(data["images"]):
            np.testing.assert_array_equal(coco.label_map(index), _reference_label_map(data, image, expected_masks))


@settings(max_examples=200, deadline=None)
# Runs up to 2**24: 40 of them stay below 2**31 pixels, past which pycocotools' frPyObjects
# overflows a 32-bit size and corrupts the heap (the test process aborts).
@given(st.lists(st.integers(0, 2**24), min_size=1, max_size=40))
def test_compressed_counts_decode_what_pycocotools_encodes(runs):
    runs[1:] = [max(run, 1) for run in runs[1:]]
    total = sum(runs)
    if total == 0:
        runs, total = [0, 1], 1
    # A (total x 1) image: pycocotools encodes the run lengths without allocating the mask.
    encoded = mask_utils.frPyObjects({"size": [total, 1], "counts": runs}, total, 1)
    np.testing.assert_array_equal(compressed_counts(encoded["counts"], where="t"), runs)


@contextmanager
def _never_decoded():
    """Fails the test if input ever reaches pycocotools (pytest.fail is not an Exception: no handler hides it)."""

    def refuse(*args, **kwargs):
        pytest.fail("invalid segmentation reached pycocotools")

    with pytest.MonkeyPatch.context() as patch:
        for name in ("frPyObjects", "merge", "decode"):
            patch.setattr(mask_utils, name, refuse)  # the module tseg imports when it decodes
        yield


NOT_NUMBERS = st.sampled_from([float("nan"), float("inf"), -float("inf"), True, False, None, "3", [1.0], {}, 10**400])
HUGE = st.one_of(st.floats(1e4, 1e300), st.floats(-1e300, -1e4), st.integers(10**5, 10**30))


@st.composite
def invalid_polygons(draw, height: int, width: int):
    polygon = draw(polygons(height, width))
    flat = polygon[0]
    how = draw(st.sampled_from(["value", "huge", "odd", "short", "not a list"]))
    if how == "value":
        flat[draw(st.integers(0, len(flat) - 1))] = draw(NOT_NUMBERS)
    elif how == "huge":  # 1e4 is beyond the margin of any image here (<= 23 px)
        flat[draw(st.integers(0, len(flat) - 1))] = draw(HUGE)
    elif how == "odd":
        flat.append(1.0)
    elif how == "short":
        del flat[draw(st.sampled_from([2, 4])) :]
    else:
        polygon[0] = draw(st.sampled_from([5, "0 0 1 0 1 1", {"x": [0, 1, 1]}, None]))
    return polygon


@st.composite
def invalid_rles(draw, height: int, width: int):
    runs = draw(st.lists(st.integers(0, 50), min_size=1, max_size=8))
    how = draw(st.sampled_from(["sum", "negative", "type", "size", "counts type"]))
    size = [height, width]
    if how == "sum":
        runs.append(height * width + 1 - sum(runs) if sum(runs) <= height * width else 0)
        if sum(runs) == height * width:
            runs.append(1)
    elif how == "negative":
        runs[draw(st.integers(0, len(runs) - 1))] = draw(st.integers(-(2**40), -1))
        runs.append(max(height * width - sum(runs), 0))
    elif how == "type":
        runs[draw(st.integers(0, len(runs) - 1))] = draw(st.sampled_from([1.0, "1", None, True, [1]]))
    elif how == "size":
        size = draw(st.sampled_from([[height + 1, width], [height, width - 1], [width * height], ["1", "1"], None]))
        runs = _runs(np.zeros((height, width), np.uint8))
    else:
        return {"size": size, "counts": draw(st.sampled_from([None, 3, {"a": 1}, 2.5]))}
    return {"size": size, "counts": runs}


@FAST
@given(sizes, st.data())
def test_invalid_geometry_always_gives_tseg_error_before_pycocotools(size, data):
    height, width = size
    seg = data.draw(st.one_of(invalid_polygons(height, width), invalid_rles(height, width)))
    with _never_decoded():
        with pytest.raises(TsegError) as caught:
            annotation_mask({"id": 9, "segmentation": seg}, height, width)
    assert str(caught.value).startswith("annotation 9") and "\n" not in str(caught.value)


COUNT_CHARS = st.one_of(st.characters(min_codepoint=48, max_codepoint=111), st.characters(max_codepoint=300))


@st.composite
def counts_strings(draw):
    """Strings pycocotools wrote for random runs, often with one character changed, dropped or added."""
    runs = draw(st.lists(st.integers(0, 5000), min_size=1, max_size=12))
    total = max(sum(runs), 1)
    runs[-1] += total - sum(runs)
    text = mask_utils.frPyObjects({"size": [total, 1], "counts": runs}, total, 1)["counts"].decode("ascii")
    how = draw(st.sampled_from(["keep", "replace", "drop", "add", "cut"]))
    at = draw(st.integers(0, len(text) - 1))
    char = draw(COUNT_CHARS)
    return {
        "keep": text,
        "replace": text[:at] + char + text[at + 1 :],
        "drop": text[:at] + text[at + 1 :],
        "add": text[:at] + char + text[at:],
        "cut": text[:at],
    }[how]


@settings(max_examples=200, deadline=None)
@given(
    sizes,
    st.one_of(counts_strings(), st.text(alphabet=COUNT_CHARS, max_size=30)),
    st.sampled_from([True, True, True, False]),
)
def test_any_compressed_counts_string_is_decoded_correctly_or_refused(size, counts, fit_size):
    height, width = size
    if fit_size:  # make the image as large as the string's runs, so that many strings are valid
        try:
            total = int(compressed_counts(counts, where="t").sum())
        except TsegError:
            total = 0
        if 1 <= total <= 10**6:
            height, width = total, 1
    seg = {"size": [height, width], "counts": counts}
    try:
        mask = annotation_mask({"id": 3, "segmentation": seg}, height, width)
    except TsegError as err:
        event("refused")
        assert "\n" not in str(err)
        return
    event("decoded")
    runs = compressed_counts(counts, where="t")
    np.testing.assert_array_equal(mask, _mask_from_runs(runs, height, width))
