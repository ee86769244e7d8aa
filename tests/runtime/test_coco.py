import json
import shutil

import numpy as np
import pytest

from tests.tiny_coco import CLASSES, write_tiny_coco
from tseg.runtime.coco import CocoDataset
from tseg.runtime.errors import TsegError


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


def test_malformed_segmentation_names_the_annotation(coco_copy):
    root, _ = coco_copy
    _rewrite(root, lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3, 4]]))
    coco = CocoDataset(root / "train.json")
    with pytest.raises(TsegError, match=r"annotation 1: need polygons of >= 3"):
        coco.label_map(0)


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
    _rewrite(root, lambda d: d["images"][1].update(width=81))
    with pytest.raises(TsegError, match="says 81x48"):
        CocoDataset(root / "train.json").read_image(1)


def test_not_json_and_missing_folder(tmp_path):
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(TsegError, match="not valid JSON"):
        CocoDataset(tmp_path / "bad.json")
    with pytest.raises(TsegError, match="data folder not found"):
        CocoDataset(tmp_path / "x.json", root=tmp_path / "missing")
