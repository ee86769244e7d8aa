import json
import shutil

import numpy as np
import pytest

from tests.nested import set_at
from tests.tiny_coco import CLASSES, write_tiny_coco
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.pixel_limit import image_pixel_limit


@pytest.fixture
def coco_copy(tmp_path):
    truths = write_tiny_coco(tmp_path)
    return tmp_path, truths


def test_labels_follow_category_list_order_not_ids(tiny_coco_dir):
    coco = CocoDataset(tiny_coco_dir / "train.json")
    assert coco.classes == CLASSES
    assert coco.category_labels == {7: 1, 2: 2, 15: 3}


def test_label_maps_decode_polygons_rle_and_crowd_with_larger_label_winning(coco_copy):
    root, truths = coco_copy
    for split in ("train.json", "val.json"):
        coco = CocoDataset(root / split)
        for i in range(len(coco)):
            labels = coco.label_map(i)
            np.testing.assert_array_equal(labels, truths[coco.images[i].file_name])
            image = coco.read_image(i)
            assert image.dtype == np.uint8 and image.shape == (*labels.shape, 3)
    # The overlap region of the Metal polygon and the Paper RLE is Paper (2).
    coco = CocoDataset(root / "train.json")
    assert coco.label_map(0)[22, 10] == 2


def _rewrite(root, mutate):
    data = json.loads((root / "train.json").read_text())
    mutate(data)
    (root / "train.json").write_text(json.dumps(data))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(images=[]), "has no images"),
        (lambda d: d.pop("images"), "has no images"),
        (lambda d: d["annotations"][0].update(category_id=99), "unknown category id 99"),
        (lambda d: d["annotations"][0].update(image_id=12345), "unknown image id 12345"),
        (lambda d: d["categories"].append({"id": 7, "name": "dup"}), "category id 7 appears twice"),
        (lambda d: d["images"][0].pop("width"), "need images with id, file_name, height and width"),
    ],
)
def test_bad_json_gives_a_clear_error(coco_copy, mutate, message):
    root, _ = coco_copy
    _rewrite(root, mutate)
    with pytest.raises(TsegError, match=message):
        CocoDataset(root / "train.json")


def test_malformed_segmentation_fails_when_the_dataset_is_opened(coco_copy):
    root, _ = coco_copy
    _rewrite(root, lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]))
    message = r"train\.json: annotation 1 \(image 100, rgb/000\.jpg\): need polygons of >= 3"
    with pytest.raises(TsegError, match=message):
        CocoDataset(root / "train.json")


def _zigzag(points):
    """A polygon of ``points`` vertices swinging across a 56 px wide image, inside the margin."""
    return [[v for i in range(points) for v in ((-50.0 if i % 2 else 100.0), i * 70.0 / points)]]


SEG = ("annotations", 0, "segmentation")  # image 100: 72 high, 56 wide; a polygon
RLE = ("annotations", 1, "segmentation")  # compressed RLE on image 100
RAW_RLE = ("annotations", 2, "segmentation")  # uncompressed RLE on image 100
ANN1 = r"annotation 1 \(image 100, rgb/000\.jpg\)"

BAD_DATASETS = [
    # images
    (set_at(("images", 0, "id"), 1.5), r"images\[0\] id: need an integer"),
    (set_at(("images", 0, "id"), "100"), r"images\[0\] id: need an integer"),
    (set_at(("images", 0, "id"), True), r"images\[0\] id: need an integer"),
    (set_at(("images", 0, "width"), 0), r"image 100 \(rgb/000\.jpg\) width: need an integer in \[1, 100000\]"),
    (set_at(("images", 0, "height"), -3), r"height: need an integer in \[1, 100000\]"),
    (set_at(("images", 0, "height"), 72.0), r"height: need an integer"),
    (set_at(("images", 0, "width"), 100_001), r"width: need an integer in \[1, 100000\]"),
    (set_at(("images", 0, "width"), 10**30), r"width: need an integer in \[1, 100000\]"),
    (lambda d: d["images"][0].update(width=20_000, height=20_000), r"400000000 pixels is over the limit of 89478485"),
    (set_at(("images", 0, "file_name"), "/etc/passwd"), r"image 100 file_name: need a relative path"),
    (set_at(("images", 0, "file_name"), "../outside.jpg"), r"image 100 file_name: need a relative path"),
    (set_at(("images", 0, "file_name"), "rgb/../../x.jpg"), r"need a relative path"),
    (set_at(("images", 0, "file_name"), "a\x00b.jpg"), r"need a relative path"),
    (set_at(("images", 0, "file_name"), ""), r"need a relative path"),
    (set_at(("images", 0, "file_name"), 7), r"image 100: need a file_name string, got int"),
    (set_at(("images", 1, "file_name"), "rgb/000.jpg"), r"images 100 and 107 have the same file_name"),
    (set_at(("images", 1, "id"), 100), r"image id 100 appears twice"),
    (set_at(("images", 0), "rgb/000.jpg"), r"need images with id, file_name, height and width"),
    (set_at(("images",), {"id": 1}), r"has no images"),
    # categories
    (set_at(("categories", 0, "id"), "7"), r"category id: need an integer"),
    (set_at(("categories", 0, "name"), ""), r"category 7 name: need a non-empty printable string"),
    (set_at(("categories", 0, "name"), 5), r"category 7 name: need a non-empty printable string"),
    (set_at(("categories", 0, "name"), "Me\ntal"), r"category 7 name: need a non-empty printable string"),
    (set_at(("categories", 0, "name"), "Background"), r"category 7 is named 'Background' like tseg's label 0"),
    (set_at(("categories", 1, "name"), "Metal"), r"category 2 is named 'Metal' like another category"),
    (set_at(("categories", 0), ["id", 7]), r"need categories with id and name"),
    # annotations
    (set_at(("annotations",), {"id": 1}), r"need 'annotations' to be a list"),
    (lambda d: d["annotations"][0].pop("id"), r"annotations\[0\] id: need an integer"),
    (set_at(("annotations", 0, "id"), True), r"annotations\[0\] id: need an integer"),
    (set_at(("annotations", 1, "id"), 1), r"annotation id 1 appears twice"),
    (set_at(("annotations", 0, "image_id"), "100"), r"annotation 1 refers to unknown image id '100'"),
    (set_at(("annotations", 0, "category_id"), 7.0), r"annotation 1 has unknown category id 7\.0"),
    (set_at(("annotations", 0, "category_id"), True), r"annotation 1 has unknown category id True"),
    (set_at(("annotations", 0, "iscrowd"), 2), r"annotation 1: need iscrowd 0 or 1, got 2"),
    (set_at(("annotations", 0, "iscrowd"), "0"), r"annotation 1: need iscrowd 0 or 1"),
    (lambda d: d["annotations"][0].pop("segmentation"), r"annotation without a segmentation"),
    # polygons
    (
        set_at(SEG, [[1e12, 4, 24, 4, 24, 24]]),
        ANN1 + r", polygon 0: x coordinate 1e\+12 is far outside the 56x72 image",
    ),
    (set_at(SEG, [[-1e12, 4, 24, 4, 24, 24]]), r"x coordinate -1e\+12 is far outside .* \(need -56 <= x <= 112\)"),
    (set_at(SEG, [[4, 4, 24, 1e308, 24, 24]]), r"y coordinate 1e\+308 is far outside .* \(need -72 <= y <= 144\)"),
    (set_at(SEG, [[4, 4, 24, 10**400, 24, 24]]), r"polygon 0 has a coordinate too large for a float"),
    (set_at(SEG, [[4, 4, 24, 4, 24, 24, 4]]), ANN1 + r": need polygons of >= 3 \(x, y\) points .* got 7 numbers"),
    (set_at(SEG, [["4", "4", "24", "4", "24", "24"]]), r"polygon 0 must hold numbers only, got '4'"),
    (set_at(SEG, [[True, 4, 24, 4, 24, 24]]), r"polygon 0 must hold numbers only, got True"),
    (set_at(SEG, [[None, 4, 24, 4, 24, 24]]), r"polygon 0 must hold numbers only, got None"),
    (set_at(SEG, [[[4, 4], [24, 4], [24, 24]]]), r"need polygons of >= 3 \(x, y\) points"),
    (
        set_at(SEG, [[[4, 4], [24, 4], [24, 24], [4, 24], [1, 1], [2, 2]]]),
        r"polygon 0 must hold numbers only, got \[4,",
    ),
    (set_at(SEG, [4, 4, 24, 4, 24, 24]), r"polygon 0 must be a list of numbers, got 4"),
    (set_at(SEG, "4 4 24 4 24 24"), ANN1 + r": need polygons \(a list\) or RLE"),
    (set_at(SEG, {"counts": [4032]}), r"need polygons \(a list\) or RLE \(counts and size\)"),
    (set_at(SEG, _zigzag(5000)), r"the polygons' outline is \d+ pixels long, over the limit of 32768"),
    # RLE
    (set_at((*RLE, "size"), [72, 57]), r"annotation 2 \(image 100, rgb/000\.jpg\): RLE size \[72, 57\] differs"),
    (set_at((*RLE, "size"), ["72", "56"]), r"RLE size must be \[height, width\] integers"),
    (set_at((*RLE, "size"), [72]), r"RLE size must be \[height, width\] integers"),
    (set_at((*RLE, "counts"), "T>>j1 0000"), r"annotation 2 .*may only hold characters '0'..'o', got b' '"),
    (set_at((*RLE, "counts"), "T>>j1\u00e9"), r"may only hold characters '0'..'o'"),
    (set_at((*RLE, "counts"), "T>>j10000P"), r"end in the middle of a run length"),
    (set_at((*RLE, "counts"), "oooooooo1"), r"a run length too large for any image"),
    (set_at((*RLE, "counts"), ""), r"compressed RLE counts are empty"),
    (set_at((*RLE, "counts"), "4@"), r"decode to a negative run length"),
    (set_at((*RLE, "counts"), "T>>j1000"), r"RLE run lengths add up to \d+ pixels, need 4032 \(72x56\)"),
    (set_at((*RLE, "counts"), None), r"RLE counts must be a list of run lengths or a string, got None"),
    (set_at((*RAW_RLE, "counts"), [4000, 33]), r"annotation 3 .*RLE run lengths add up to 4033 pixels, need 4032"),
    (set_at((*RAW_RLE, "counts"), [4000, 31]), r"add up to 4031 pixels"),
    (set_at((*RAW_RLE, "counts"), [4040, -8]), r"RLE run lengths must be in \[0, 2147483647\], got -8"),
    (set_at((*RAW_RLE, "counts"), [4032.0]), r"RLE counts must be integers, got 4032\.0"),
    (set_at((*RAW_RLE, "counts"), [2**40, 4032]), r"RLE run lengths must be in \[0, 2147483647\], got 1099511627776"),
    (set_at((*RAW_RLE, "counts"), ["4032"]), r"RLE counts must be integers, got '4032'"),
]


@pytest.mark.parametrize(("mutate", "message"), BAD_DATASETS)
def test_bad_values_give_one_line_naming_the_file_and_annotation(coco_copy, mutate, message):
    root, _ = coco_copy
    _rewrite(root, mutate)
    with pytest.raises(TsegError, match=message) as caught:
        CocoDataset(root / "train.json")
    text = str(caught.value)
    assert "\n" not in text and str(root / "train.json") in text


def test_polygons_may_overshoot_the_border_by_an_image_size(coco_copy):
    root, _ = coco_copy
    polygon = [-56.0, -72.0, 112.0, -72.0, 112.0, 144.0, -56.0, 144.0]  # the margin's corners: whole image
    _rewrite(root, set_at(SEG, [polygon]))
    labels = CocoDataset(root / "train.json").label_map(0)
    assert (labels != 0).all() and (labels == 1).any()  # Metal (1) everywhere but under Paper and Glass


def test_empty_polygons_and_no_annotations_are_fine(coco_copy):
    root, _ = coco_copy
    _rewrite(root, set_at(SEG, [[]]))
    assert not (CocoDataset(root / "train.json").label_map(0) == 1).any()
    _rewrite(root, lambda d: d.pop("annotations"))
    coco = CocoDataset(root / "train.json")
    assert not coco.has_annotations and not coco.label_map(0).any()


def test_image_pixel_limit_follows_the_setting(coco_copy):
    root, _ = coco_copy
    _rewrite(root, lambda d: (d["images"][0].update(width=20_000, height=20_000), d.pop("annotations")))
    with image_pixel_limit(None):
        CocoDataset(root / "train.json")  # the sizes pass; the file's real size is checked on reading
    with image_pixel_limit(5000):
        with pytest.raises(TsegError, match=r"image 100 \(rgb/000\.jpg\) is 20000x20000: .* over the limit of 5000"):
            CocoDataset(root / "train.json")
    _rewrite(root, lambda d: d["images"].pop(0))
    with image_pixel_limit(4000):  # 3840-pixel images pass, 4096-pixel ones do not
        with pytest.raises(TsegError, match=r"image 114 \(rgba/002\.png\) is 64x64: 4096 pixels is over the limit"):
            CocoDataset(root / "train.json")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"is empty"),
        (b"  \n ", r"is empty"),
        (b"{nope", r"is not valid JSON: Expecting property name"),
        (b'{"images": NaN}', r"is not valid JSON: NaN is not a number JSON allows"),
        (b'{"images": [{"id": Infinity}]}', r"Infinity is not a number JSON allows"),
        (b'{"images": -Infinity}', r"-Infinity is not a number JSON allows"),
        (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply"),
        (b'{"images": ' + b"1" * 5000 + b"}", r"holds an integer with thousands of digits"),
        ('{"images": "caf\u00e9"}'.encode("latin-1"), r"not UTF-8 text"),
        (b"\xff\xfe{\x00}\x00", r"not UTF-8 text"),
        (b"[1, 2]", r"need a COCO object at the top level, got list"),
        (b'"text"', r"need a COCO object at the top level, got str"),
    ],
)
def test_json_python_cannot_take_gives_one_line_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(TsegError, match=message) as caught:
        CocoDataset(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_json_with_a_utf8_byte_order_mark_is_read(coco_copy):
    root, truths = coco_copy
    path = root / "train.json"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    coco = CocoDataset(path)
    np.testing.assert_array_equal(coco.label_map(0), truths[coco.images[0].file_name])


def test_json_path_that_is_a_folder_or_missing(tmp_path):
    (tmp_path / "split.json").mkdir()
    with pytest.raises(TsegError, match=r"split\.json is a folder: need a COCO annotation file"):
        CocoDataset(tmp_path / "split.json")
    with pytest.raises(TsegError, match=r"annotation file not found: .*gone\.json"):
        CocoDataset(tmp_path / "gone.json")


def test_missing_image_file_is_named(coco_copy):
    root, _ = coco_copy
    shutil.rmtree(root / "gray")
    with pytest.raises(TsegError, match=r"missing under .* e\.g\. gray/001\.png"):
        CocoDataset(root / "train.json")


def test_unreadable_image_and_wrong_size(coco_copy):
    root, _ = coco_copy
    (root / "rgb" / "000.jpg").write_bytes(b"not a jpeg")
    coco = CocoDataset(root / "train.json")
    with pytest.raises(TsegError, match=r"cannot read image .*000\.jpg"):
        coco.read_image(0)
    _rewrite(root, lambda d: (d["images"][1].update(width=81), d.pop("annotations")))
    with pytest.raises(TsegError, match="says 81x48"):
        CocoDataset(root / "train.json").read_image(1)


def test_not_json_and_missing_folder(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(TsegError, match="not valid JSON"):
        CocoDataset(tmp_path / "bad.json")
    with pytest.raises(TsegError, match="data folder not found"):
        CocoDataset(tmp_path / "x.json", root=tmp_path / "missing")
