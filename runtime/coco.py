"""COCO-format segmentation datasets as label maps: the single source of truth.

Label 0 is background (COCO has no background annotation); object classes
follow the order of the JSON's ``categories`` list, whatever their ids. Where
objects overlap, the larger label wins, as the competition's baseline did.
Polygons and RLE (compressed or not) are decoded by pycocotools.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from tseg.runtime.errors import TsegError
from tseg.runtime.images import read_image

BACKGROUND = "Background"


@dataclass(frozen=True)
class CocoImage:
    """One entry of the JSON's ``images`` list."""

    id: int
    file_name: str
    height: int
    width: int


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise TsegError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TsegError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise TsegError(f"{path}: need a COCO object at the top level, got {type(data).__name__}")
    return data


def _parse_images(data: dict, source: Path) -> list[CocoImage]:
    raw = data.get("images")
    if not isinstance(raw, list) or not raw:
        raise TsegError(f"{source} has no images: need a non-empty 'images' list")
    images, seen = [], set()
    for entry in raw:
        try:
            image = CocoImage(
                id=int(entry["id"]),
                file_name=str(entry["file_name"]),
                height=int(entry["height"]),
                width=int(entry["width"]),
            )
        except (KeyError, TypeError, ValueError):
            raise TsegError(
                f"{source}: need images with id, file_name, height and width, got {entry!r:.200}"
            ) from None
        if image.id in seen:
            raise TsegError(f"{source}: image id {image.id} appears twice")
        seen.add(image.id)
        images.append(image)
    return images


def _parse_categories(data: dict, source: Path) -> tuple[tuple[str, ...], dict[int, int]]:
    raw = data.get("categories")
    if not isinstance(raw, list) or not raw:
        raise TsegError(f"{source} has no categories: need a non-empty 'categories' list")
    names, labels = [BACKGROUND], {}
    for entry in raw:
        try:
            cat_id, name = int(entry["id"]), str(entry["name"])
        except (KeyError, TypeError, ValueError):
            raise TsegError(f"{source}: need categories with id and name, got {entry!r:.200}") from None
        if cat_id in labels:
            raise TsegError(f"{source}: category id {cat_id} appears twice")
        labels[cat_id] = len(names)
        names.append(name)
    return tuple(names), labels


def _group_annotations(
    data: dict, source: Path, image_ids: set[int], category_labels: Mapping[int, int]
) -> dict[int, list[dict]]:
    grouped: dict[int, list[dict]] = {image_id: [] for image_id in image_ids}
    raw = data.get("annotations") or []
    if not isinstance(raw, list):
        raise TsegError(f"{source}: need 'annotations' to be a list, got {type(raw).__name__}")
    for ann in raw:
        if not isinstance(ann, dict) or "segmentation" not in ann:
            raise TsegError(f"{source}: annotation without a segmentation: {ann!r:.200}")
        ann_id = ann.get("id", "?")
        if ann.get("image_id") not in grouped:
            raise TsegError(
                f"{source}: annotation {ann_id} refers to unknown image id {ann.get('image_id')!r}"
            )
        if ann.get("category_id") not in category_labels:
            raise TsegError(
                f"{source}: annotation {ann_id} has unknown category id {ann.get('category_id')!r}"
                f" (valid ids: {sorted(category_labels)})"
            )
        grouped[ann["image_id"]].append(ann)
    return grouped


def annotation_mask(ann: Mapping, height: int, width: int) -> np.ndarray:
    """Decodes one annotation's segmentation to an (H, W) uint8 0/1 mask.

    Accepts polygons (a list of flat [x1, y1, x2, y2, ...] lists), uncompressed
    RLE (``counts`` a list) and compressed RLE (``counts`` a string).

    Raises:
        TsegError: the segmentation is malformed.
    """
    seg = ann["segmentation"]
    where = f"annotation {ann.get('id', '?')}"
    try:
        if isinstance(seg, list):
            polygons = [p for p in seg if len(p) > 0]
            for polygon in polygons:
                if len(polygon) < 6 or len(polygon) % 2:
                    raise TsegError(
                        f"{where}: need polygons of >= 3 (x, y) points, got {len(polygon)} numbers"
                    )
            if not polygons:
                return np.zeros((height, width), dtype=np.uint8)
            rle = mask_utils.merge(
                mask_utils.frPyObjects([[float(v) for v in p] for p in polygons], height, width)
            )
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            if list(seg["size"]) != [height, width]:
                raise TsegError(f"{where}: RLE size {seg['size']} differs from image {[height, width]}")
            rle = mask_utils.frPyObjects(seg, height, width) if isinstance(seg["counts"], list) else seg
        else:
            raise TsegError(f"{where}: need polygons or RLE with counts and size, got {seg!r:.120}")
        return mask_utils.decode(rle)
    except TsegError:
        raise
    except Exception as err:  # pycocotools raises bare Exception/TypeError on bad input
        raise TsegError(f"{where}: malformed segmentation ({err})") from None


class CocoDataset:
    """A COCO JSON plus its image folder, read as (image, label map) pairs.

    Args:
        json_path: the annotation file (train.json, val.json, ...).
        root: folder that ``file_name`` entries are relative to; defaults to
            the JSON's folder.

    Raises:
        TsegError: the JSON is missing, malformed or refers to missing files.
    """

    def __init__(self, json_path: str | Path, *, root: str | Path | None = None) -> None:
        self.json_path = Path(json_path)
        self.root = Path(root) if root is not None else self.json_path.parent
        if not self.root.is_dir():
            raise TsegError(f"data folder not found: {self.root}")
        data = _load_json(self.json_path)
        self.images = _parse_images(data, self.json_path)
        self.classes, self.category_labels = _parse_categories(data, self.json_path)
        self.has_annotations = bool(data.get("annotations"))
        self._annotations = _group_annotations(
            data, self.json_path, {im.id for im in self.images}, self.category_labels
        )
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
        for ann in self._annotations[info.id]:
            where = f"{self.json_path.name}, image {info.file_name}"
            try:
                mask = annotation_mask(ann, info.height, info.width)
            except TsegError as err:
                raise TsegError(f"{where}: {err}") from None
            label = self.category_labels[ann["category_id"]]
            np.maximum(labels, mask.astype(dtype) * label, out=labels)
        return labels
