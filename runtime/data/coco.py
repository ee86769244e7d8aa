"""COCO-format segmentation datasets as label maps: the single source of truth.

Label 0 is background (COCO has no background annotation); object classes
follow the order of the JSON's ``categories`` list, whatever their ids. Where
objects overlap, the larger label wins, as the competition's baseline did.
Polygons and RLE (compressed or not) are decoded by pycocotools, once
:mod:`tseg.runtime.data.coco_checks` has checked them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tseg.runtime.data.coco_checks import (
    MAX_PIXELS,
    MAX_SIDE,
    check_int,
    check_name,
    check_segmentation,
    is_int,
    load_json,
)
from tseg.runtime.errors import TsegError
from tseg.runtime.files import safe_relative_path
from tseg.runtime.images import read_image
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.runtime.pixel_limit import max_image_pixels, pixel_limit_message

BACKGROUND = "Background"
"""Label 0's name: the classes are background plus the categories (MAX_CLASSES in all, at most)."""


@dataclass(frozen=True)
class CocoImage:
    """One entry of the JSON's ``images`` list."""

    id: int
    file_name: str
    height: int
    width: int


def _parse_images(data: dict, source: Path) -> list[CocoImage]:
    raw = data.get("images")
    if not isinstance(raw, list) or not raw:
        raise TsegError(f"{source} has no images: need a non-empty 'images' list")
    images: list[CocoImage] = []
    ids: set[int] = set()
    names: dict[Path, int] = {}
    for index, entry in enumerate(raw):
        image = _parse_image(entry, index, source)
        if image.id in ids:
            raise TsegError(f"{source}: image id {image.id} appears twice")
        key = Path(image.file_name)
        if key in names:
            raise TsegError(
                f"{source}: images {names[key]} and {image.id} have the same file_name {image.file_name!r}"
                " (their results would overwrite each other)"
            )
        ids.add(image.id)
        names[key] = image.id
        images.append(image)
    return images


def _parse_image(entry: object, index: int, source: Path) -> CocoImage:
    if not isinstance(entry, dict) or not {"id", "file_name", "height", "width"} <= entry.keys():
        raise TsegError(f"{source}: need images with id, file_name, height and width, got {entry!r:.200}")
    what = f"{source}: images[{index}]"
    image_id = check_int(entry["id"], what=f"{what} id")
    what = f"{source}: image {image_id}"
    file_name = entry["file_name"]
    if not isinstance(file_name, str):
        raise TsegError(f"{what}: need a file_name string, got {type(file_name).__name__}")
    safe_relative_path(file_name, what=f"{what} file_name")
    height = check_int(entry["height"], what=f"{what} ({file_name}) height", low=1, high=MAX_SIDE)
    width = check_int(entry["width"], what=f"{what} ({file_name}) width", low=1, high=MAX_SIDE)
    limit = max_image_pixels()
    if limit is not None and height * width > limit:
        raise TsegError(f"{what} ({file_name}) is {width}x{height}: {pixel_limit_message(height * width, limit)}")
    if height * width > MAX_PIXELS:
        raise TsegError(
            f"{what} ({file_name}) is {width}x{height} = {height * width} pixels, more than the"
            f" {MAX_PIXELS} that pycocotools can index"
        )
    return CocoImage(id=image_id, file_name=file_name, height=height, width=width)


def _parse_categories(data: dict, source: Path) -> tuple[tuple[str, ...], dict[int, int]]:
    raw = data.get("categories")
    if not isinstance(raw, list) or not raw:
        raise TsegError(f"{source} has no categories: need a non-empty 'categories' list")
    if len(raw) + 1 > MAX_CLASSES:  # + background
        raise TsegError(
            f"{source} has {len(raw)} categories ({len(raw) + 1} classes with background): tseg handles at most"
            f" {MAX_CLASSES} classes (8-bit label maps, label 255 kept as training's ignore label)"
        )
    names, labels = [BACKGROUND], {}
    for entry in raw:
        if not isinstance(entry, dict) or "id" not in entry or "name" not in entry:
            raise TsegError(f"{source}: need categories with id and name, got {entry!r:.200}")
        cat_id = check_int(entry["id"], what=f"{source}: category id")
        name = check_name(entry["name"], what=f"{source}: category {cat_id} name")
        if cat_id in labels:
            raise TsegError(f"{source}: category id {cat_id} appears twice")
        if name in names:
            taken = "tseg's label 0 for unannotated pixels" if name == BACKGROUND else "another category"
            raise TsegError(f"{source}: category {cat_id} is named {name!r} like {taken}: class names must be unique")
        labels[cat_id] = len(names)
        names.append(name)
    return tuple(names), labels


@dataclass(frozen=True)
class _Shape:
    """One checked annotation: its id, its label and its segmentation."""

    ann_id: int
    label: int
    segmentation: list | dict


def _group_annotations(
    data: dict, source: Path, images: Mapping[int, CocoImage], category_labels: Mapping[int, int]
) -> dict[int, list[_Shape]]:
    grouped: dict[int, list[_Shape]] = {image_id: [] for image_id in images}
    raw = data.get("annotations")
    raw = [] if raw is None else raw
    if not isinstance(raw, list):
        raise TsegError(f"{source}: need 'annotations' to be a list, got {type(raw).__name__}")
    seen: set[int] = set()
    for index, ann in enumerate(raw):
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise TsegError(f"{source}: annotation without a segmentation: {ann!r:.200}")
        ann_id = check_int(ann.get("id"), what=f"{source}: annotations[{index}] id")
        if ann_id in seen:
            raise TsegError(f"{source}: annotation id {ann_id} appears twice")
        seen.add(ann_id)
        image_id, cat_id = ann.get("image_id"), ann.get("category_id")
        if not is_int(image_id) or image_id not in images:
            raise TsegError(f"{source}: annotation {ann_id} refers to unknown image id {image_id!r:.60}")
        if not is_int(cat_id) or cat_id not in category_labels:
            raise TsegError(
                f"{source}: annotation {ann_id} has unknown category id {cat_id!r:.60}"
                f" (valid ids: {sorted(category_labels)})"
            )
        if "iscrowd" in ann and not (is_int(ann["iscrowd"]) and ann["iscrowd"] in (0, 1)):
            raise TsegError(f"{source}: annotation {ann_id}: need iscrowd 0 or 1, got {ann['iscrowd']!r:.60}")
        image = images[image_id]
        where = f"{source}: annotation {ann_id} (image {image_id}, {image.file_name})"
        check_segmentation(ann["segmentation"], height=image.height, width=image.width, where=where)
        grouped[image_id].append(_Shape(ann_id, category_labels[cat_id], ann["segmentation"]))
    return grouped


def annotation_mask(ann: Mapping, height: int, width: int) -> np.ndarray:
    """Decodes one annotation's segmentation to an (H, W) uint8 0/1 mask.

    Accepts polygons (a list of flat [x1, y1, x2, y2, ...] lists), uncompressed
    RLE (``counts`` a list) and compressed RLE (``counts`` a string); all are
    checked (see :mod:`tseg.runtime.data.coco_checks`) before pycocotools sees them.

    Raises:
        TsegError: the segmentation is malformed or out of the image's bounds.
    """
    where = f"annotation {ann.get('id', '?')}"
    if "segmentation" not in ann:
        raise TsegError(f"{where} has no segmentation")
    check_segmentation(ann["segmentation"], height=height, width=width, where=where)
    return _decode(ann["segmentation"], height, width, where)


def _decode(seg: list | dict, height: int, width: int, where: str) -> np.ndarray:
    """(H, W) uint8 mask of a segmentation that passed :func:`check_segmentation`."""
    from pycocotools import mask as mask_utils  # here, not at import: tseg-infer on photos never needs it

    try:
        if isinstance(seg, list):
            polygons = [[float(v) for v in polygon] for polygon in seg if len(polygon) > 0]
            if not polygons:
                return np.zeros((height, width), dtype=np.uint8)
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        elif isinstance(seg["counts"], list):
            uncompressed = {"size": [height, width], "counts": [int(c) for c in seg["counts"]]}
            rle = mask_utils.frPyObjects(uncompressed, height, width)
        else:
            rle = {"size": [height, width], "counts": seg["counts"]}
        return mask_utils.decode(rle)
    except Exception as err:  # a backstop: pycocotools raises bare Exception/TypeError on bad input
        raise TsegError(f"{where}: malformed segmentation ({' '.join(str(err).split())})") from None


class CocoDataset:
    """A COCO JSON plus its image folder, read as (image, label map) pairs.

    Args:
        json_path: the annotation file (train.json, val.json, ...).
        root: folder that ``file_name`` entries are relative to; defaults to
            the JSON's folder.

    Everything in the JSON is checked here (see :mod:`tseg.runtime.data.coco_checks`),
    so a bad file fails before any work is done.

    Raises:
        TsegError: the JSON is missing, malformed or refers to missing files.
    """

    def __init__(self, json_path: str | Path, *, root: str | Path | None = None) -> None:
        self.json_path = Path(json_path)
        self.root = Path(root) if root is not None else self.json_path.parent
        if not self.root.is_dir():
            raise TsegError(f"data folder not found: {self.root}")
        data = load_json(self.json_path)
        self.images = _parse_images(data, self.json_path)
        self.classes, self.category_labels = _parse_categories(data, self.json_path)
        self.has_annotations = bool(data.get("annotations"))
        self._annotations = _group_annotations(
            data, self.json_path, {im.id: im for im in self.images}, self.category_labels
        )
        del data
        missing = [im.file_name for im in self.images if not (self.root / im.file_name).is_file()]
        if missing:
            raise TsegError(
                f"{len(missing)} image file(s) listed in {self.json_path} are missing under"
                f" {self.root}, e.g. {missing[0]}"
            )

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def check_model_classes(self, classes: Sequence[str], *, what: str = "the model") -> None:
        """Refuses scoring a model with another number of classes against this split.

        Labels are compared by index, so the counts must agree (names may differ).

        Args:
            classes: the model's class names, in label order (background first).
            what: names the model in the error ("the model", "the checkpoint best.pt").

        Raises:
            TsegError: the counts differ; names both and the split's classes.
        """
        if len(classes) != self.num_classes:
            raise TsegError(
                f"{what} has {len(classes)} classes but {self.json_path.name} has"
                f" {self.num_classes} (with background): {', '.join(self.classes)}"
            )

    def image_path(self, index: int) -> Path:
        return self.root / self.images[index].file_name

    def read_image(self, index: int) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB, checked against the JSON's size."""
        info = self.images[index]
        image = read_image(self.image_path(index))
        if image.shape[:2] != (info.height, info.width):
            raise TsegError(
                f"{self.image_path(index)} is {image.shape[1]}x{image.shape[0]} but"
                f" {self.json_path.name} says {info.width}x{info.height}"
            )
        return image

    def label_map(self, index: int) -> np.ndarray:
        """(H, W) labels: 0 background, overlaps resolved by the larger label."""
        info = self.images[index]
        dtype = np.uint8 if self.num_classes <= 256 else np.uint16
        labels = np.zeros((info.height, info.width), dtype=dtype)
        for shape in self._annotations[info.id]:
            where = f"{self.json_path}: annotation {shape.ann_id} (image {info.id}, {info.file_name})"
            mask = _decode(shape.segmentation, info.height, info.width, where)
            np.maximum(labels, mask.astype(dtype) * shape.label, out=labels)
        return labels
