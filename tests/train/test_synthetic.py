"""Tests of the built-in synthetic trash dataset (tiny sizes, a few seconds in all)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from tseg.train.data import synthetic
from tseg.train.data.synthetic import (
    default_cache_dir,
    ensure_synthetic_dataset,
    generate_synthetic_dataset,
    render_synthetic_sample,
)

NAMES = [
    "UNKNOWN", "General trash", "Paper", "Paper pack", "Metal", "Glass",
    "Plastic", "Styrofoam", "Plastic bag", "Battery", "Clothing",
]  # fmt: skip
TINY = {"num_train": 4, "num_val": 2, "num_test": 2, "image_size": 64, "seed": 3}


def _generate(root: Path, **overrides) -> Path:
    return generate_synthetic_dataset(root, **{**TINY, "progress": False, **overrides})


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return _generate(tmp_path_factory.mktemp("synthetic") / "data")


def _load(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}.json").read_text())


def test_layout_and_json_fields(dataset):
    for folder in ("batch_01_vt", "batch_02_vt", "batch_03"):
        assert (dataset / folder).is_dir()
    for split in ("train_all", "train", "val", "test", "manifest"):
        assert (dataset / f"{split}.json").is_file()
    assert not list(dataset.parent.glob(".data.partial-*"))  # the temporary folder is gone
    train, val = _load(dataset, "train"), _load(dataset, "val")
    assert len(train["images"]) == 4 and len(val["images"]) == 2
    folders = {img["file_name"].split("/")[0] for img in train["images"] + val["images"]}
    assert len(folders) == 3  # splits are mixed across folders
    for image in train["images"]:
        assert set(image) == {"id", "width", "height", "file_name"}
        with Image.open(dataset / image["file_name"]) as im:
            assert im.format == "JPEG" and im.size == (64, 64) and im.mode == "RGB"
    ann = train["annotations"][0]
    assert set(ann) == {"id", "image_id", "category_id", "segmentation", "bbox", "area", "iscrowd"}
    for ann in train["annotations"]:
        assert ann["iscrowd"] == 0 and ann["area"] > 0 and 1 <= ann["category_id"] <= 11
        (polygon,) = ann["segmentation"]
        assert len(polygon) % 2 == 0 and len(polygon) >= 6
        assert all(round(c, 1) == c and 0 <= c <= 64 for c in polygon)
        x, y, w, h = ann["bbox"]
        assert x == min(polygon[0::2]) and y == min(polygon[1::2]) and w > 0 and h > 0
    ids = [a["id"] for a in train["annotations"] + val["annotations"]]
    assert len(set(ids)) == len(ids)
    train_all = _load(dataset, "train_all")
    assert train_all["images"] == train["images"] + val["images"]
    assert train_all["annotations"] == train["annotations"] + val["annotations"]


def test_categories_in_competition_order(dataset):
    for split in ("train_all", "train", "val", "test"):
        cats = _load(dataset, split)["categories"]
        assert [c["id"] for c in cats] == list(range(1, 12))
        assert [c["name"] for c in cats] == NAMES
        assert all("supercategory" in c for c in cats)


def test_test_json_loads_in_pycocotools_without_annotations(dataset):
    coco = COCO(str(dataset / "test.json"))
    assert len(coco.getImgIds()) == 2
    assert coco.getAnnIds() == []
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == NAMES


def test_polygons_with_max_rule_reproduce_rendered_labels(dataset):
    coco = COCO(str(dataset / "train_all.json"))
    agree = total = 0
    for image_id in coco.getImgIds():
        mask = np.zeros((64, 64), dtype=np.uint8)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id)):
            mask = np.maximum(mask, coco.annToMask(ann) * ann["category_id"])
        truth = render_synthetic_sample(seed=3, index=image_id, image_size=64).label
        agree += int((mask == truth).sum())
        total += mask.size
    assert agree / total >= 0.99


def test_same_seed_gives_identical_files_and_other_seeds_differ(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(synthetic, "_WORKERS", 3)  # the thread count must not matter
    again = _files(_generate(tmp_path / "again"))
    assert again == _files(dataset)
    other = _files(_generate(tmp_path / "other", seed=4))
    assert other.keys() == again.keys()
    assert other["batch_01_vt/0000.jpg"] != again["batch_01_vt/0000.jpg"]


def test_several_objects_per_image_and_every_class_appears():
    seen: set[int] = set()
    background = []
    for index in range(10):
        sample = render_synthetic_sample(seed=0, index=index, image_size=96)
        assert len(sample.objects) >= 3
        ids = [obj.category_id for obj in sample.objects]
        assert ids == sorted(ids)  # drawn in increasing category id
        seen |= set(ids)
        background.append(float((sample.label == 0).mean()))
        assert sample.image.shape == (96, 96, 3) and sample.image.dtype == np.uint8
    assert seen == set(range(1, 12))
    assert 0.3 <= np.mean(background) <= 0.7


def test_rectangular_size_is_height_by_width(tmp_path):
    sample = render_synthetic_sample(seed=0, index=0, image_size=(48, 80))
    assert sample.label.shape == (48, 80)


def test_cache_dir_follows_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "tseg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "tseg"


def test_ensure_generates_once_then_reuses(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    calls = []
    real = synthetic.generate_synthetic_dataset

    def counting(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(synthetic, "generate_synthetic_dataset", counting)
    kw = {"num_train": 2, "num_val": 1, "num_test": 1, "image_size": 48, "progress": False}
    first = ensure_synthetic_dataset(**kw)
    assert first == tmp_path / "tseg" / "synthetic-v1-s0-48-2-1-1"
    stamp = (first / "manifest.json").stat().st_mtime_ns
    assert ensure_synthetic_dataset(**kw) == first
    assert len(calls) == 1 and (first / "manifest.json").stat().st_mtime_ns == stamp
    assert ensure_synthetic_dataset(**kw, seed=1) != first and len(calls) == 2


def test_ensure_refuses_a_foreign_folder(tmp_path):
    folder = tmp_path / "synthetic-v1-s0-48-2-1-1"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a dataset")
    kw = {"num_train": 2, "num_val": 1, "num_test": 1, "image_size": 48, "cache_dir": tmp_path}
    with pytest.raises(FileExistsError, match="has no manifest.json"):
        ensure_synthetic_dataset(**kw)


def test_crash_leaves_no_dataset(monkeypatch, tmp_path):
    def boom(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(synthetic, "render_synthetic_sample", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        _generate(tmp_path / "data")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"num_train": 0}, ValueError, "num_train must be >= 1, got 0"),
        ({"num_test": -2}, ValueError, "num_test must be >= 1, got -2"),
        ({"num_val": 2.0}, TypeError, "num_val must be an int, got float"),
        ({"seed": -1}, ValueError, "seed must be >= 0, got -1"),
        ({"image_size": 16}, ValueError, "image height must be >= 32, got 16"),
        ({"image_size": (64, 64, 3)}, ValueError, r"image_size must be an int or \(height"),
    ],
)
def test_bad_arguments(tmp_path, overrides, error, message):
    with pytest.raises(error, match=message):
        _generate(tmp_path / "data", **overrides)


def test_refuses_a_non_empty_root(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mine.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="must be new or empty"):
        _generate(tmp_path / "data")
    assert (tmp_path / "data" / "mine.txt").read_text() == "keep me"
