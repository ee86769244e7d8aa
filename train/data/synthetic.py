"""Built-in synthetic "trash" dataset in the competition's COCO layout.

The competition's photos are not public, so tseg generates a stand-in with the same
layout, class list and mask rule (see ``shared/design/competition.md``)::

    root/
      batch_01_vt/ batch_02_vt/ batch_03/   # JPEGs; image i goes to folder i % 3
      train_all.json train.json val.json test.json
      manifest.json                         # written last: the folder is complete

Each image is a floor or table texture with 3-8 irregular objects of the 11 object
classes, each class a family of shapes and textures whose colours overlap with other
classes'. Objects are drawn in increasing category id, so the baseline's mask rule
(``mask = max(mask, annToMask(ann) * label)``) applied to the full polygons gives
exactly the visible label of every pixel (up to polygon-rasterisation edge pixels).
Shading, soft shadows, an illumination gradient, Gaussian noise and JPEG quality
70-90 make it look photographed.

Generation is deterministic: image ``i`` uses ``np.random.default_rng([seed, i])``
and fixed JPEG settings, so the same arguments give byte-identical files.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from tseg.runtime.cache_dir import default_cache_dir
from tseg.runtime.files import TempFile
from tseg.train.data.synthetic_classes import CATEGORY_NAMES
from tseg.train.data.synthetic_scene import (
    SyntheticObject,
    SyntheticSample,
    check_int,
    check_size,
    render_synthetic_sample,
)

__all__ = [
    "CATEGORY_NAMES",
    "SyntheticObject",
    "SyntheticSample",
    "default_cache_dir",
    "ensure_synthetic_dataset",
    "generate_synthetic_dataset",
    "render_synthetic_sample",
]

GENERATOR_VERSION = 1
"""Bump when the pictures change, so cached folders of the old look are not reused."""
FOLDERS = ("batch_01_vt", "batch_02_vt", "batch_03")
MANIFEST = "manifest.json"
_WORKERS = min(4, os.cpu_count() or 1)


# --------------------------------------------------------------------------- writing


def generate_synthetic_dataset(
    root: Path,
    *,
    num_train: int,
    num_val: int,
    num_test: int,
    image_size: int | tuple[int, int] = 512,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Writes a synthetic dataset in the competition layout into ``root``.

    The files are written into a temporary sibling folder that is renamed to ``root``
    at the end, so an interrupted run never leaves a folder that looks complete.

    Args:
        root: folder to create; it must not exist, or be empty.
        num_train: images in train.json (>= 1).
        num_val: images in val.json (>= 1).
        num_test: images in test.json (>= 1), without annotations.
        image_size: side of square images, or (height, width).
        seed: dataset seed (>= 0); the same arguments give byte-identical files.
        progress: show a tqdm progress bar.

    Returns:
        ``root``.

    Raises:
        ValueError: on a bad count, size or seed.
        FileExistsError: if ``root`` exists and is not empty.
    """
    counts = {"train": num_train, "val": num_val, "test": num_test}
    for split, n in counts.items():
        check_int(f"num_{split}", n, 1)
    height, width = check_size(image_size)
    check_int("seed", seed, 0)
    root = Path(root)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"synthetic dataset root must be new or empty, got {root}")
    temp = TempFile(root, folder=True)  # renamed onto ``root`` (new or empty) when complete
    try:
        _write_dataset(temp.temp, counts, (height, width), seed, progress)
    except BaseException:
        temp.discard()
        raise
    temp.commit()
    return root


def _write_dataset(tmp: Path, counts: dict[str, int], size: tuple[int, int], seed: int, progress: bool) -> None:
    for folder in FOLDERS:
        (tmp / folder).mkdir()
    categories = [{"id": i + 1, "name": name, "supercategory": name} for i, name in enumerate(CATEGORY_NAMES)]
    splits = {split: {"images": [], "annotations": []} for split in counts}
    order = [split for split, n in counts.items() for _ in range(n)]
    next_ann = 1
    # NumPy and Pillow release the GIL in their heavy loops, so threads render in parallel;
    # each image has its own generator, so the files do not depend on the thread count.
    pool = ThreadPoolExecutor(max_workers=_WORKERS)
    try:
        jobs = pool.map(lambda i: _render_jpeg(seed, i, size), range(len(order)))
        for index, (jpeg, objects) in enumerate(
            tqdm(jobs, total=len(order), desc="synthetic data", disable=not progress)
        ):
            file_name = f"{FOLDERS[index % 3]}/{index // 3:04d}.jpg"
            (tmp / file_name).write_bytes(jpeg)
            split = order[index]
            splits[split]["images"].append({"id": index, "width": size[1], "height": size[0], "file_name": file_name})
            if split != "test":
                anns = [_annotation(obj, index, next_ann + k) for k, obj in enumerate(objects)]
                splits[split]["annotations"] += anns
                next_ann += len(anns)
    finally:
        pool.shutdown(cancel_futures=True)  # on an error, do not render the rest first
    _write_json_files(tmp, splits, categories, seed, size, counts)


def _render_jpeg(seed: int, index: int, size: tuple[int, int]) -> tuple[bytes, tuple]:
    sample = render_synthetic_sample(seed=seed, index=index, image_size=size)
    buffer = io.BytesIO()
    Image.fromarray(sample.image).save(buffer, format="JPEG", quality=sample.jpeg_quality, subsampling="4:2:0")
    return buffer.getvalue(), sample.objects


def _write_json_files(tmp, splits, categories, seed, size, counts) -> None:
    info = {"description": "tseg synthetic trash dataset", "version": GENERATOR_VERSION}
    splits["train_all"] = {key: splits["train"][key] + splits["val"][key] for key in ("images", "annotations")}
    for split, content in splits.items():
        _write_json(tmp / f"{split}.json", {"info": info, **content, "categories": categories})
    manifest = {
        "generator": "tseg.train.data.synthetic",
        "version": GENERATOR_VERSION,
        "seed": seed,
        "image_size": list(size),
        **{f"num_{split}": n for split, n in counts.items()},
    }
    _write_json(tmp / MANIFEST, manifest)  # last: marks the folder complete


def _annotation(obj: SyntheticObject, image_id: int, ann_id: int) -> dict:
    x0, y0 = obj.polygon.min(axis=0)
    x1, y1 = obj.polygon.max(axis=0)
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": obj.category_id,
        "segmentation": [obj.polygon.reshape(-1).tolist()],
        "bbox": [float(x0), float(y0), round(float(x1 - x0), 1), round(float(y1 - y0), 1)],
        "area": float(obj.area),
        "iscrowd": 0,
    }


def _write_json(path: Path, content: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(content, f, separators=(",", ":"))


# ----------------------------------------------------------------------------- cache


def ensure_synthetic_dataset(
    *,
    num_train: int = 300,
    num_val: int = 60,
    num_test: int = 40,
    image_size: int | tuple[int, int] = 512,
    seed: int = 0,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> Path:
    """Returns the cached synthetic dataset for these arguments, generating it once.

    The folder is ``<cache_dir>/synthetic-v<version>-s<seed>-<size>-<train>-<val>-<test>``
    and counts as present when its manifest exists (it is written last).

    Args:
        num_train: images in train.json.
        num_val: images in val.json.
        num_test: images in test.json.
        image_size: side of square images, or (height, width).
        seed: dataset seed.
        cache_dir: parent folder; defaults to :func:`default_cache_dir`.
        progress: show a progress bar while generating.

    Returns:
        The dataset root, laid out as described in the module docstring.
    """
    height, width = check_size(image_size)
    size = f"{height}" if height == width else f"{height}x{width}"
    name = f"synthetic-v{GENERATOR_VERSION}-s{seed}-{size}-{num_train}-{num_val}-{num_test}"
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / name
    if (root / MANIFEST).is_file():
        return root
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists but has no {MANIFEST}, so it is not a complete synthetic dataset; "
            "delete it to generate it again"
        )
    try:
        generate_synthetic_dataset(
            root,
            num_train=num_train,
            num_val=num_val,
            num_test=num_test,
            image_size=(height, width),
            seed=seed,
            progress=progress,
        )
    except OSError:
        if not (root / MANIFEST).is_file():  # another process finished first: use its copy
            raise
    return root
