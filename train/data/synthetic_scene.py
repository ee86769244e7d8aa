"""Renders one image of the synthetic trash dataset: floor, objects, camera.

See :mod:`tseg.train.data.synthetic` for the dataset as a whole. Objects are drawn in
increasing category id, so the full polygons with the max rule give the visible labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tseg.train.data import synthetic_shapes as sh
from tseg.train.data.synthetic_classes import CATEGORY_NAMES, FAMILIES, Patch, background

_MAX_OBJECTS, _MIN_OBJECTS = 8, 3
_BATTERY = CATEGORY_NAMES.index("Battery") + 1
_MAX_OVERLAP = 0.25  # the most of a new object that may lie on earlier ones


@dataclass(frozen=True)
class SyntheticObject:
    """One annotated object.

    Attributes:
        category_id: 1..11, an index into :data:`CATEGORY_NAMES` plus one.
        polygon: (N, 2) outline as (x, y) pixels, rounded to 0.1 px, inside the image.
        area: number of pixels the full polygon covers (hidden parts included).
    """

    category_id: int
    polygon: np.ndarray
    area: int


@dataclass(frozen=True)
class SyntheticSample:
    """One rendered image before JPEG compression.

    Attributes:
        image: (H, W, 3) uint8 RGB.
        label: (H, W) uint8 visible label per pixel, 0 = background.
        objects: annotated objects in drawing order (increasing category id).
        jpeg_quality: quality the image is saved with.
    """

    image: np.ndarray
    label: np.ndarray
    objects: tuple[SyntheticObject, ...]
    jpeg_quality: int


# ------------------------------------------------------------------------- rendering


def render_synthetic_sample(*, seed: int, index: int, image_size: int | tuple[int, int] = 512) -> SyntheticSample:
    """Renders image ``index`` of the dataset with ``seed``.

    Args:
        seed: dataset seed (>= 0).
        index: image number within the dataset (>= 0), over all splits.
        image_size: side of a square image, or (height, width).

    Returns:
        The image, its label map and its objects.
    """
    height, width = check_size(image_size)
    check_int("seed", seed, 0)
    check_int("index", index, 0)
    rng = np.random.default_rng([seed, index])
    canvas = background(rng, height, width)
    objects = _place_objects(rng, height, width)
    label = np.zeros((height, width), dtype=np.uint8)
    light = rng.uniform(0, 2 * np.pi)
    scale = min(height, width) / 512
    shadow = (np.cos(light), np.sin(light), rng.uniform(4, 10) * scale, rng.uniform(0.3, 0.5))
    placed = []
    for obj, frame in sorted(objects, key=lambda o: o[0].category_id):  # stable sort
        _draw_shadow(canvas, obj.polygon, shadow, scale)
        mask = _draw_object(rng, canvas, obj, frame)
        box = sh.polygon_box(obj.polygon, height, width)
        label[box[1] : box[3], box[0] : box[2]][mask] = obj.category_id
        placed.append(obj)
    image = _photograph(rng, canvas)
    return SyntheticSample(image, label, tuple(placed), int(rng.integers(70, 91)))


def _place_objects(rng: np.random.Generator, height: int, width: int) -> list:
    """Chooses distinct classes and places them until 40-60% of the image is covered.

    Batteries, the smallest class, sometimes come in pairs to keep the classes' pixel
    shares roughly balanced.
    """
    scale = min(height, width) / 512
    target = rng.uniform(0.4, 0.6) * height * width
    occupied = np.zeros((height, width), dtype=bool)
    objects = []
    classes = [int(c) for c in rng.permutation(len(CATEGORY_NAMES)) + 1]
    classes = [c for c in classes for _ in range(2 if c == _BATTERY and rng.random() < 0.5 else 1)]
    for cid in classes:
        if len(objects) >= _MAX_OBJECTS or (len(objects) >= _MIN_OBJECTS and occupied.sum() >= target):
            break
        for _ in range(8):
            found = _try_place(rng, int(cid), occupied, scale)
            if found is not None:
                objects.append(found)
                break
    return objects


def _try_place(rng, cid: int, occupied: np.ndarray, scale: float):
    height, width = occupied.shape
    fam = FAMILIES[cid]
    length = rng.uniform(*fam.length) * scale
    breadth = length * rng.uniform(*fam.aspect)
    angle = rng.uniform(0, 2 * np.pi)
    cx, cy = rng.uniform(0.08, 0.92) * width, rng.uniform(0.08, 0.92) * height
    outline, extra = fam.outline(rng, length, breadth)
    full = sh.to_image_frame(outline, cx, cy, angle)
    polygon = np.round(np.clip(full, [0, 0], [width, height]), 1)
    box = sh.polygon_box(polygon, height, width)
    mask = sh.fill_polygon(polygon, box)
    area = int(mask.sum())
    if area < 0.6 * _shoelace(full) or area < 16:
        return None  # mostly outside the image
    crop = occupied[box[1] : box[3], box[0] : box[2]]
    if (crop & mask).sum() > _MAX_OVERLAP * area:
        return None
    crop |= mask
    frame = (cx, cy, angle, length, breadth, extra)
    return SyntheticObject(cid, polygon, area), frame


def _shoelace(polygon: np.ndarray) -> float:
    x, y = polygon[:, 0], polygon[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _draw_shadow(canvas: np.ndarray, polygon: np.ndarray, shadow: tuple, scale: float) -> None:
    dx, dy, dist, strength = shadow
    height, width = canvas.shape[:2]
    radius = 4.0 * scale
    moved = polygon + np.array([dx, dy]) * dist
    pad = int(3 * radius) + 2
    x0, y0, x1, y1 = sh.polygon_box(moved, height, width)
    box = (max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, width), min(y1 + pad, height))
    if box[2] <= box[0] or box[3] <= box[1]:
        return
    soft = sh.blur(sh.fill_polygon(moved, box).astype(np.float32), radius)
    canvas[box[1] : box[3], box[0] : box[2]] *= (1.0 - strength * soft)[..., None]


def _draw_object(rng, canvas: np.ndarray, obj: SyntheticObject, frame: tuple) -> np.ndarray:
    """Paints one object onto ``canvas`` in place; returns its mask in its box."""
    cx, cy, angle, length, breadth, extra = frame
    x0, y0, x1, y1 = sh.polygon_box(obj.polygon, *canvas.shape[:2])
    mask = sh.fill_polygon(obj.polygon, (x0, y0, x1, y1))
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - cx
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - cy
    up = dx * np.cos(angle) + dy * np.sin(angle)
    vp = -dx * np.sin(angle) + dy * np.cos(angle)
    under = canvas[y0:y1, x0:x1]
    patch = Patch(up, vp, up / (length / 2), vp / (breadth / 2), mask, under.copy(), extra)
    rgb, alpha = FAMILIES[obj.category_id].texture(rng, patch)
    tilt = rng.uniform(0, 2 * np.pi)
    light = 1.0 + rng.uniform(0.05, 0.15) * (np.cos(tilt) * patch.u + np.sin(tilt) * patch.v)
    weight = mask * np.asarray(alpha, dtype=np.float32)
    canvas[y0:y1, x0:x1] = sh.mix(under, rgb * light[..., None], weight)
    return mask


def _photograph(rng: np.random.Generator, canvas: np.ndarray) -> np.ndarray:
    """Illumination gradient, colour cast and sensor noise; returns uint8 (H, W, 3)."""
    height, width = canvas.shape[:2]
    y = np.linspace(-1.0, 1.0, height, dtype=np.float32)[:, None]
    x = np.linspace(-1.0, 1.0, width, dtype=np.float32)[None, :]
    a = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(a) * x + np.sin(a) * y
    glow = sh.smooth_noise(rng, height, width, max(height, width) / 3)
    gain = 1.0 + rng.uniform(0.05, 0.2) * ramp + 0.15 * (glow - 0.5)
    cast = 1.0 + rng.normal(0.0, 0.03, 3).astype(np.float32)
    out = canvas * gain[..., None]
    out *= cast
    noise = rng.standard_normal(out.shape, dtype=np.float32)
    noise *= rng.uniform(0.01, 0.03)
    out += noise
    out *= 255.0
    out += 0.5
    return np.clip(out, 0.0, 255.0).astype(np.uint8)


# ------------------------------------------------------------------------ validation


def check_int(name: str, value: object, minimum: int) -> None:
    """Raises TypeError unless ``value`` is an int, ValueError if it is below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    """Checks an image size (a side, or (height, width), each >= 32); returns (H, W)."""
    if isinstance(image_size, (tuple, list)):
        if len(image_size) != 2:
            raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
        height, width = image_size
    else:
        height = width = image_size
    for name, value in (("image height", height), ("image width", width)):
        check_int(name, value, 32)
    return int(height), int(width)
