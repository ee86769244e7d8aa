"""A small hand-written COCO dataset that tseg did not generate.

It has what real datasets throw at a reader: unsorted, non-contiguous category
ids, polygons, compressed and uncompressed RLE, iscrowd, a grayscale image, an
RGBA image and sizes other than 512.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# Category list order defines labels: Metal=1, Paper=2, Glass=3.
CATEGORIES = [{"id": 7, "name": "Metal"}, {"id": 2, "name": "Paper"}, {"id": 15, "name": "Glass"}]
COLOURS = {7: (200, 60, 40), 2: (40, 180, 60), 15: (50, 70, 210)}
CLASSES = ("Background", "Metal", "Paper", "Glass")


def _rect_polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE: run lengths over the column-major flattening, zeros first."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, value, run = [], 0, 0
    for pixel in flat:
        if pixel != value:
            counts.append(run)
            value, run = pixel, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def _draw_image(rng, height, width, objects, mode):
    """Background noise plus filled objects; returns the image and the truth label map."""
    image = rng.integers(90, 140, size=(height, width, 3)).astype(np.uint8)
    truth = np.zeros((height, width), dtype=np.uint8)
    labels = {c["id"]: i + 1 for i, c in enumerate(CATEGORIES)}
    for cat_id, mask in sorted(objects, key=lambda o: labels[o[0]]):
        image[mask > 0] = COLOURS[cat_id]
        truth[mask > 0] = labels[cat_id]
    img = Image.fromarray(image)
    return (img.convert(mode) if mode != "RGB" else img), truth


def _objects_for(index, height, width):
    """Three objects per image, each encoded in a different way."""
    s = 1 + index % 3
    polygon_mask = np.zeros((height, width), np.uint8)
    polygon = _rect_polygon(4 * s, 4, 4 * s + 20, 24)
    polygon_mask[:] = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygon, height, width)))
    rle_mask = np.zeros((height, width), np.uint8, order="F")
    rle_mask[20:34, 6 : 6 + 18 + 2 * s] = 1  # overlaps the polygon: Paper (2) wins
    crowd_mask = np.zeros((height, width), np.uint8, order="F")
    crowd_mask[8:30, width - 22 : width - 4] = 1
    compressed = mask_utils.encode(np.asfortranarray(rle_mask))
    compressed["counts"] = compressed["counts"].decode("ascii")
    anns = [
        (7, polygon_mask, {"segmentation": polygon, "iscrowd": 0}),
        (2, rle_mask, {"segmentation": compressed, "iscrowd": 0}),
        (15, crowd_mask, {"segmentation": _uncompressed_rle(crowd_mask), "iscrowd": 1}),
    ]
    return anns


def write_tiny_coco(root: Path, *, num_train: int = 6, num_val: int = 3) -> dict[str, np.ndarray]:
    """Writes the dataset under ``root``; returns the expected label map per file name."""
    rng = np.random.default_rng(0)
    specs = []  # (file_name, height, width, mode)
    for i in range(num_train + num_val):
        if i % 3 == 1:
            specs.append((f"gray/{i:03d}.png", 48, 80, "L"))
        elif i % 3 == 2:
            specs.append((f"rgba/{i:03d}.png", 64, 64, "RGBA"))
        else:
            specs.append((f"rgb/{i:03d}.jpg", 72, 56, "RGB"))
    images, annotations, truths = [], [], {}
    for i, (name, h, w, mode) in enumerate(specs):
        anns = _objects_for(i, h, w)
        img, truth = _draw_image(rng, h, w, [(c, m) for c, m, _ in anns], mode)
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        img.save(root / name, quality=95) if name.endswith(".jpg") else img.save(root / name)
        image_id = 100 + 7 * i  # ids need not be contiguous either
        images.append({"id": image_id, "file_name": name, "height": h, "width": w})
        for cat_id, mask, fields in anns:
            ys, xs = np.nonzero(mask)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": cat_id,
                    "bbox": [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1],
                    "area": int(mask.sum()),
                    **fields,
                }
            )
        truths[name] = truth
    split = {"train.json": images[:num_train], "val.json": images[num_train:]}
    for json_name, split_images in split.items():
        ids = {im["id"] for im in split_images}
        data = {
            "images": split_images,
            "categories": CATEGORIES,
            "annotations": [a for a in annotations if a["image_id"] in ids],
        }
        (root / json_name).write_text(json.dumps(data))
    return truths
