"""Geometry and noise helpers for the synthetic trash dataset.

Everything here is pure NumPy (plus Pillow for fast smooth resampling and blurs).
Images are float32 arrays of shape (H, W, 3) in [0, 1]; masks are (H, W).

Coordinates follow the COCO convention: pixel (row r, column c) covers the square
[c, c + 1) x [r, r + 1), so its centre is (c + 0.5, r + 0.5). :func:`fill_polygon`
tests pixel centres, which is what ``pycocotools`` does up to boundary pixels.
"""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image, ImageFilter

# ----------------------------------------------------------------------------- raster


def fill_polygon(polygon: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Rasterises a simple polygon inside a box with the even-odd rule at pixel centres.

    Args:
        polygon: (N, 2) vertices as (x, y) in image pixels.
        box: (x0, y0, x1, y1) integer crop of the image, end-exclusive.

    Returns:
        (y1 - y0, x1 - x0) bool mask of the pixels whose centre is inside.
    """
    x0, y0, x1, y1 = box
    h, w = y1 - y0, x1 - x0
    pa = polygon.astype(np.float64)
    pb = np.roll(pa, -1, axis=0)
    yc = np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5  # (h, 1)
    ya, yb = pa[None, :, 1], pb[None, :, 1]
    crosses = (ya <= yc) != (yb <= yc)  # half-open in y: no double counting at vertices
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (yc - ya) / (yb - ya)
        xs = np.where(crosses, pa[None, :, 0] + t * (pb[None, :, 0] - pa[None, :, 0]), np.inf)
    xs.sort(axis=1)
    n_pairs = int(crosses.sum(axis=1).max(initial=0)) // 2
    diff = np.zeros((h, w + 1), dtype=np.int32)
    rows = np.arange(h)
    for k in range(n_pairs):
        xa, xb = xs[:, 2 * k], xs[:, 2 * k + 1]
        ok = np.isfinite(xb)
        # Pixel c is inside when xa <= c + 0.5 < xb.
        start = np.clip(np.ceil(xa[ok] - 0.5 - x0), 0, w).astype(np.int64)
        stop = np.clip(np.ceil(xb[ok] - 0.5 - x0), 0, w).astype(np.int64)
        np.add.at(diff, (rows[ok], start), 1)
        np.add.at(diff, (rows[ok], stop), -1)
    return np.cumsum(diff[:, :w], axis=1) > 0


def polygon_box(polygon: np.ndarray, height: int, width: int) -> tuple[int, int, int, int]:
    """Integer crop (x0, y0, x1, y1) that holds every pixel a polygon can cover."""
    x0 = int(np.clip(np.floor(polygon[:, 0].min()), 0, width))
    y0 = int(np.clip(np.floor(polygon[:, 1].min()), 0, height))
    x1 = int(np.clip(np.ceil(polygon[:, 0].max()) + 1, 0, width))
    y1 = int(np.clip(np.ceil(polygon[:, 1].max()) + 1, 0, height))
    return x0, y0, x1, y1


# ------------------------------------------------------------------------------ noise


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [0, 1] with features about ``cell`` pixels wide, shape (H, W)."""
    cell = max(float(cell), 1.0)
    gh, gw = int(height / cell) + 3, int(width / cell) + 3
    grid = rng.random((gh, gw), dtype=np.float32)
    big = Image.fromarray(grid, mode="F").resize((int(gw * cell), int(gh * cell)), Image.Resampling.BICUBIC)
    out = np.asarray(big, dtype=np.float32)
    oy, ox = int(cell), int(cell)  # skip the border where bicubic rings
    return np.clip(out[oy : oy + height, ox : ox + width], 0.0, 1.0)


def fractal_noise(rng: np.random.Generator, height: int, width: int, cell: float, octaves: int = 3) -> np.ndarray:
    """Sum of ``octaves`` value-noise layers, halving the cell each time; in [0, 1]."""
    total = np.zeros((height, width), dtype=np.float32)
    weight = 0.0
    for k in range(octaves):
        amp = 0.5**k
        total += amp * smooth_noise(rng, height, width, cell / 2**k)
        weight += amp
    return total / weight


def blur(array: np.ndarray, radius: float) -> np.ndarray:
    """Gaussian blur of an (H, W) float array in [0, 1] (8-bit precision)."""
    img = Image.fromarray(np.clip(array * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32) / 255.0


def edge_band(mask: np.ndarray, radius: float) -> np.ndarray:
    """Weight in [0, 1] that is 1 on the inner boundary of ``mask`` and fades inwards."""
    soft = blur(mask.astype(np.float32), radius)
    return mask * np.clip((1.0 - soft) * 2.0, 0.0, 1.0)


# ----------------------------------------------------------------------------- colour


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """One RGB colour (3,) from hue (wraps), saturation and value in [0, 1]."""
    rgb = colorsys.hsv_to_rgb(h % 1.0, float(np.clip(s, 0, 1)), float(np.clip(v, 0, 1)))
    return np.asarray(rgb, dtype=np.float32)


def paint(colour: np.ndarray, shade: np.ndarray) -> np.ndarray:
    """(H, W, 3) image of one colour times an (H, W) shading field."""
    return shade[..., None].astype(np.float32) * colour[None, None, :]


def mix(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per-pixel blend a * (1 - t) + b * t with an (H, W) weight."""
    t = np.asarray(t, dtype=np.float32)
    t = t[..., None] if t.ndim == 2 else t
    return a * (1.0 - t) + b * t


# --------------------------------------------------------------------------- outlines
# Outlines are (N, 2) arrays in an object's local frame, in pixels: x along the
# object's length L, y across its width W, centred on 0.


def blob_outline(rng: np.random.Generator, length: float, width: float, *, wobble: float, jitter: float) -> np.ndarray:
    """Irregular closed blob: an ellipse with random low harmonics and jagged noise."""
    n = 64
    t = np.linspace(0.0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(2, 6):
        r += wobble / k * rng.uniform(0.3, 1.0) * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    r *= 1.0 + jitter * rng.standard_normal(n)
    r = np.clip(r, 0.45, 1.5)
    return np.stack([0.5 * length * r * np.cos(t), 0.5 * width * r * np.sin(t)], axis=1)


def torn_rect_outline(rng: np.random.Generator, length: float, width: float) -> np.ndarray:
    """Rectangle with torn (jagged) edges and, sometimes, a cut corner."""
    hl, hw = length / 2, width / 2
    corners = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]])
    if rng.random() < 0.5:  # dog-eared corner
        k = int(rng.integers(4))
        cut = rng.uniform(0.15, 0.35) * min(length, width)
        prev, nxt = corners[k - 1], corners[(k + 1) % 4]
        c = corners[k]
        a = c + (prev - c) / np.linalg.norm(prev - c) * cut
        b = c + (nxt - c) / np.linalg.norm(nxt - c) * cut
        corners = np.concatenate([corners[:k], [a, b], corners[k + 1 :]])
    points = []
    for i in range(len(corners)):
        a, b = corners[i], corners[(i + 1) % len(corners)]
        seg = b - a
        n = max(int(np.linalg.norm(seg) / 7), 2)
        s = np.linspace(0, 1, n, endpoint=False)[:, None]
        normal = np.array([-seg[1], seg[0]]) / (np.linalg.norm(seg) + 1e-9)
        amp = rng.choice([0.8, 2.5]) if rng.random() < 0.6 else 0.4
        off = amp * rng.standard_normal((n, 1))
        off[0] = 0.0
        points.append(a + s * seg + off * normal)
    return np.concatenate(points)


def box_outline(rng: np.random.Generator, length: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """Box seen at an angle: convex hull of a front face and its shifted back face.

    Returns:
        The outline (N, 2) and the shift (2,) of the back face.
    """
    hl, hw = length / 2, width / 2
    shift = np.array([rng.uniform(-0.25, 0.25) * length, rng.uniform(0.15, 0.4) * width])
    shift *= rng.choice([-1.0, 1.0], size=2)
    front = np.array([[-hl, -hw], [hl, -hw], [hl, hw], [-hl, hw]]) - shift / 2
    back = front + shift
    return _convex_hull(np.concatenate([front, back])), shift


def _convex_hull(points: np.ndarray) -> np.ndarray:
    """Monotone-chain convex hull, counter-clockwise (N, 2)."""
    pts = sorted(map(tuple, points))

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out[:-1]

    return np.array(half(pts) + half(pts[::-1]))


def capsule_outline(length: float, width: float, *, end_depth: float, nub: float = 0.0) -> np.ndarray:
    """Cylinder seen from the side: a band whose ends are half-ellipses ``end_depth`` deep.

    ``nub`` > 0 adds a battery's positive terminal at the +x end (as a fraction of W).
    """
    hl, hw = length / 2 - end_depth, width / 2
    t = np.linspace(-np.pi / 2, np.pi / 2, 17)
    right = np.stack([hl + end_depth * np.cos(t), hw * np.sin(t)], axis=1)
    left = np.stack([-hl - end_depth * np.cos(t), -hw * np.sin(t)], axis=1)
    if nub > 0:
        tip = length / 2 + 0.08 * length
        nw = nub * hw
        mid = len(right) // 2
        knob = np.array([[hl + end_depth * 0.9, -nw], [tip, -nw], [tip, nw], [hl + end_depth * 0.9, nw]])
        right = np.concatenate([right[: mid - 2], knob, right[mid + 3 :]])
    return np.concatenate([right, left])


def bottle_outline(rng: np.random.Generator, length: float, width: float) -> np.ndarray:
    """Bottle silhouette: rounded body, smooth shoulder, narrow neck and lip."""
    neck_w = rng.uniform(0.3, 0.45)
    neck_len = rng.uniform(0.15, 0.25)
    shoulder = rng.uniform(0.12, 0.22)
    x = np.linspace(-1.0, 1.0, 40)
    body_end = 1.0 - 2 * (neck_len + shoulder)
    half = np.ones_like(x)
    s = np.clip((x - body_end) / (2 * shoulder), 0.0, 1.0)
    half = 1.0 - (1.0 - neck_w) * 0.5 * (1 - np.cos(np.pi * s))
    half = np.where(x > 0.94, neck_w * 1.15, half)  # lip
    bottom = np.clip((x + 1.0) / 0.12, 0.0, 1.0)
    half = half * np.sqrt(bottom * (2 - bottom)) + 0.05 * (bottom < 1)
    top = np.stack([x * length / 2, half * width / 2], axis=1)
    low = top[::-1] * np.array([1.0, -1.0])
    return np.concatenate([top, low])


def rounded_rect_outline(rng: np.random.Generator, length: float, width: float, radius: float) -> np.ndarray:
    """Rounded rectangle with slightly bumpy sides."""
    hl, hw = length / 2 - radius, width / 2 - radius
    pts = []
    for k, (cx, cy) in enumerate([(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]):
        t = np.linspace(0, np.pi / 2, 7) + k * np.pi / 2
        pts.append(np.stack([cx + radius * np.cos(t), cy + radius * np.sin(t)], axis=1))
    out = np.concatenate(pts)
    return out + rng.normal(0.0, 1.0, out.shape)


def to_image_frame(outline: np.ndarray, cx: float, cy: float, angle: float) -> np.ndarray:
    """Rotates a local outline by ``angle`` (radians) and moves it to (cx, cy)."""
    c, s = np.cos(angle), np.sin(angle)
    x, y = outline[:, 0], outline[:, 1]
    return np.stack([cx + c * x - s * y, cy + s * x + c * y], axis=1)
