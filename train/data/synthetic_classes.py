"""Per-class looks of the synthetic trash dataset: outlines, textures and backgrounds.

Each class has a *family* of shapes and textures. Colour ranges overlap between
classes on purpose (Paper, Styrofoam and white Plastic bags are all pale; Plastic,
Paper pack prints and Clothing are all saturated; Metal, Battery and General trash
share greys and darks), so a model must combine colour with texture and shape.
Textures have periods of 6 px or more at 512 px, so they survive a 2x downscale.

A texture function gets a :class:`Patch` (the object's crop and local coordinates)
and returns an RGB image (H, W, 3) in [0, 1] and an opacity (scalar or (H, W)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from tseg.train.data import synthetic_shapes as sh

CATEGORY_NAMES = (
    "UNKNOWN", "General trash", "Paper", "Paper pack", "Metal", "Glass",
    "Plastic", "Styrofoam", "Plastic bag", "Battery", "Clothing",
)  # fmt: skip
"""Names of category ids 1..11, in the competition's (original edition) order."""


@dataclass
class Patch:
    """An object's crop: local coordinates, mask and what lies underneath.

    ``up``/``vp`` are pixel offsets along/across the object's axis (H, W); ``u``/``v``
    are the same divided by half the length/width, so the object spans about [-1, 1].
    """

    up: np.ndarray
    vp: np.ndarray
    u: np.ndarray
    v: np.ndarray
    mask: np.ndarray
    under: np.ndarray
    extra: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int]:
        return self.mask.shape


Texture = Callable[[np.random.Generator, Patch], tuple[np.ndarray, "np.ndarray | float"]]
Outline = Callable[[np.random.Generator, float, float], tuple[np.ndarray, dict]]


@dataclass(frozen=True)
class Family:
    """How one class looks: size range at 512 px, aspect (W / L) range, outline, texture."""

    length: tuple[float, float]
    aspect: tuple[float, float]
    outline: Outline
    texture: Texture


def _noise(rng: np.random.Generator, p: Patch, cell: float, octaves: int = 2) -> np.ndarray:
    return sh.fractal_noise(rng, *p.shape, cell, octaves)


def _cylinder(v: np.ndarray, v0: float, sharp: float) -> tuple[np.ndarray, np.ndarray]:
    """Diffuse shading across a cylinder and a specular stripe at ``v0``."""
    diffuse = 0.35 + 0.65 * np.sqrt(np.clip(1.0 - v**2, 0.0, 1.0))
    spec = np.exp(-(((v - v0) / sharp) ** 2))
    return diffuse, spec


def _hash(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) per integer pair (a, b)."""
    x = np.sin(a * 12.9898 + b * 78.233) * 43758.5453
    return x - np.floor(x)


# --------------------------------------------------------------------------- palettes
# A palette is a tuple of colour modes (weight, hue range, saturation range, value range);
# hue ranges may run past 1 and wrap. Each class has its own modes, and most modes
# overlap with another class's or a floor's.

Palette = tuple[tuple[float, tuple[float, float], tuple[float, float], tuple[float, float]], ...]

WHITE: Palette = ((1.0, (0.0, 1.0), (0.0, 0.06), (0.85, 0.97)),)
ANY: Palette = ((1.0, (0.0, 1.0), (0.5, 0.95), (0.45, 0.95)),)
PALETTES: dict[str, Palette] = {
    "unknown": ((0.55, (0.75, 0.92), (0.4, 0.8), (0.4, 0.8)),
                (0.35, (0.44, 0.52), (0.4, 0.7), (0.4, 0.7)),
                (0.1, (0.0, 1.0), (0.3, 0.9), (0.3, 0.9))),
    "trash": ((1.0, (0.03, 0.2), (0.2, 0.55), (0.12, 0.35)),),
    "paper": ((1.0, (0.09, 0.15), (0.05, 0.15), (0.8, 0.95)),),
    "pack": ((0.55, (0.07, 0.1), (0.35, 0.55), (0.55, 0.75)),
             (0.3, (0.0, 1.0), (0.0, 0.08), (0.85, 0.95)),
             (0.15, (0.0, 1.0), (0.5, 0.8), (0.5, 0.85))),
    "metal": ((0.75, (0.0, 1.0), (0.0, 0.06), (0.62, 0.85)),
              (0.25, (-0.05, 0.15), (0.4, 0.8), (0.5, 0.8))),
    "glass": ((0.45, (0.28, 0.4), (0.4, 0.7), (0.35, 0.6)),
              (0.3, (0.06, 0.1), (0.6, 0.85), (0.3, 0.5)),
              (0.25, (0.45, 0.6), (0.05, 0.2), (0.7, 0.9))),
    "plastic": ((0.55, (0.5, 0.68), (0.7, 1.0), (0.6, 0.95)),
                (0.25, (-0.05, 0.08), (0.7, 1.0), (0.65, 0.95)),
                (0.2, (0.15, 0.4), (0.7, 1.0), (0.6, 0.9))),
    "foam": ((1.0, (0.1, 0.6), (0.0, 0.04), (0.88, 0.98)),),
    "bag": ((0.4, (0.0, 1.0), (0.0, 0.05), (0.82, 0.92)),
            (0.3, (0.0, 1.0), (0.0, 0.2), (0.1, 0.2)),
            (0.3, (0.12, 0.65), (0.25, 0.5), (0.6, 0.85))),
    "battery": ((0.5, (0.0, 1.0), (0.0, 0.2), (0.08, 0.2)),
                (0.3, (0.07, 0.12), (0.6, 0.9), (0.6, 0.85)),
                (0.2, (0.55, 0.7), (0.6, 0.9), (0.4, 0.7))),
    "cloth": ((0.45, (0.58, 0.64), (0.35, 0.55), (0.3, 0.55)),
              (0.3, (-0.03, 0.03), (0.45, 0.7), (0.3, 0.55)),
              (0.25, (0.0, 1.0), (0.25, 0.6), (0.25, 0.6))),
}  # fmt: skip


def pick(rng: np.random.Generator, palette: Palette) -> np.ndarray:
    """Draws one RGB colour (3,) from a palette."""
    weights = np.array([mode[0] for mode in palette])
    _, hue, sat, val = palette[int(rng.choice(len(palette), p=weights / weights.sum()))]
    return sh.hsv(rng.uniform(*hue), rng.uniform(*sat), rng.uniform(*val))


# --------------------------------------------------------------------------- textures


def _unknown(rng: np.random.Generator, p: Patch):
    k = int(rng.integers(3, 7))
    seeds = rng.uniform(-0.9, 0.9, (k, 2))
    d = (p.u[..., None] - seeds[:, 0]) ** 2 + (p.v[..., None] - seeds[:, 1]) ** 2
    colours = np.stack([pick(rng, PALETTES["unknown"]) for _ in range(k)])
    rgb = colours[d.argmin(axis=-1)]
    hatch = np.sin((p.up + p.vp) * 2 * np.pi / rng.uniform(9, 14)) > 0.3
    rgb = rgb * (1.0 - 0.3 * hatch[..., None])
    return rgb * (0.8 + 0.3 * _noise(rng, p, 30))[..., None], 1.0


def _general_trash(rng: np.random.Generator, p: Patch):
    base = pick(rng, PALETTES["trash"])
    crumple = 0.5 + 1.0 * _noise(rng, p, 16, 3)
    rgb = sh.paint(base, crumple)
    specks = sh.smooth_noise(rng, *p.shape, 6) > 0.7
    speck_col = pick(rng, ANY)
    return np.where(specks[..., None], speck_col * crumple[..., None], rgb), 1.0


def _paper(rng: np.random.Generator, p: Patch):
    base = pick(rng, PALETTES["paper"])
    shade = 0.9 + 0.12 * _noise(rng, p, 40)
    period = rng.uniform(10, 14)
    row = np.floor(p.vp / period)
    phase = p.vp / period - row
    inside = (np.abs(p.u) < 0.85) & (np.abs(p.v) < 0.8)
    if rng.random() < 0.3:  # ruled paper
        ink = sh.hsv(rng.uniform(0.55, 0.65), 0.6, 0.75)
        marks = (phase < 0.2) & (np.abs(p.v) < 0.9)
        strength = 0.7
    else:  # printed text: words of random length on each row
        ink = sh.hsv(rng.uniform(0.55, 0.7), rng.uniform(0.0, 0.5), rng.uniform(0.1, 0.25))
        word = np.floor(p.up / rng.uniform(12, 22) + _hash(row, row))
        marks = (phase < 0.4) & inside & (_hash(row, word) > 0.3)
        strength = rng.uniform(0.7, 0.9)
    rgb = sh.mix(sh.paint(base, shade), ink * shade[..., None], marks * strength)
    return rgb, 1.0


def _paper_pack(rng: np.random.Generator, p: Patch):
    rgb = sh.paint(pick(rng, PALETTES["pack"]), np.ones(p.shape, np.float32))
    for _ in range(int(rng.integers(2, 5))):
        cu, cv = rng.uniform(-0.8, 0.8, 2)
        hu, hv = rng.uniform(0.15, 0.5, 2)
        block = (np.abs(p.u - cu) < hu) & (np.abs(p.v - cv) < hv)
        rgb = np.where(block[..., None], pick(rng, ANY), rgb)
    shift = p.extra["shift"]
    front = (np.abs(p.up + shift[0] / 2) <= p.extra["half_length"]) & (
        np.abs(p.vp + shift[1] / 2) <= p.extra["half_width"]
    )
    shade = np.where(front, 1.0, rng.uniform(0.6, 0.75)) * (0.95 + 0.08 * _noise(rng, p, 50))
    shade = shade * (1.0 - 0.4 * sh.edge_band(p.mask, 2.0))
    return rgb * shade[..., None], 1.0


def _metal(rng: np.random.Generator, p: Patch):
    base = pick(rng, PALETTES["metal"])
    diffuse, spec = _cylinder(p.v, rng.uniform(-0.5, 0.5), rng.uniform(0.1, 0.16))
    rims = 1.0 - 0.35 * ((np.abs(p.u) > 0.78) & (np.cos(p.up * 2 * np.pi / 7) > 0))
    brushed = 0.9 + 0.2 * sh.smooth_noise(rng, *p.shape, 3)
    rgb = sh.paint(base, diffuse * rims * brushed)
    rgb = rgb + (0.8 * spec + 0.3 * np.exp(-(((p.v + 0.65) / 0.15) ** 2)))[..., None]
    return np.clip(rgb, 0, 1), 1.0


def _glass(rng: np.random.Generator, p: Patch):
    tint = pick(rng, PALETTES["glass"])
    diffuse, spec = _cylinder(p.v, rng.uniform(-0.6, -0.2), 0.1)
    edge = sh.edge_band(p.mask, 3.0)
    rgb = sh.mix(sh.paint(tint, 0.7 + 0.3 * diffuse), p.under * tint * 1.4, 0.3)
    bright = np.clip(0.95 * edge + 0.85 * spec, 0.0, 1.0)
    rgb = sh.mix(rgb, np.ones_like(rgb), bright)
    return np.clip(rgb, 0, 1), np.clip(rng.uniform(0.7, 0.85) + bright, 0.0, 1.0)


def _plastic(rng: np.random.Generator, p: Patch):
    diffuse, spec = _cylinder(p.v, rng.uniform(-0.5, 0.5), 0.3)
    rgb = sh.paint(pick(rng, PALETTES["plastic"]), 0.7 + 0.3 * diffuse)
    if rng.random() < 0.4:  # label band
        c = rng.uniform(-0.4, 0.2)
        band = np.abs(p.u - c) < rng.uniform(0.15, 0.3)
        col = pick(rng, ANY)
        rgb = np.where(band[..., None], col * (0.7 + 0.3 * diffuse[..., None]), rgb)
    return np.clip(rgb + 0.3 * spec[..., None], 0, 1), 1.0


def _styrofoam(rng: np.random.Generator, p: Patch):
    base = pick(rng, PALETTES["foam"])
    period = rng.uniform(9, 13)
    warp = 6.0 * _noise(rng, p, 25)
    bumps = np.sin((p.up + warp) * 2 * np.pi / period) * np.sin((p.vp - warp) * 2 * np.pi / period)
    shade = 0.86 + 0.12 * bumps + 0.06 * sh.smooth_noise(rng, *p.shape, 4)
    shade = shade * (1.0 - 0.15 * sh.edge_band(p.mask, 3.0))
    return sh.paint(base, shade), 1.0


def _plastic_bag(rng: np.random.Generator, p: Patch):
    base = pick(rng, PALETTES["bag"])
    warp = 25.0 * _noise(rng, p, 40)
    ridge = np.zeros(p.shape, np.float32)
    for _ in range(3):
        a = rng.uniform(0, np.pi)
        t = (np.cos(a) * p.up + np.sin(a) * p.vp + warp) * 2 * np.pi / rng.uniform(25, 45)
        ridge += (1.0 - np.abs(np.sin(t))) ** 6
    ridge = np.clip(ridge, 0, 1)
    shade = 0.7 + 0.2 * _noise(rng, p, 30) + 0.4 * ridge
    rgb = np.clip(sh.paint(base, shade) + 0.2 * ridge[..., None], 0, 1)
    return rgb, rng.uniform(0.75, 0.9)


def _battery(rng: np.random.Generator, p: Patch):
    body = pick(rng, PALETTES["battery"])
    band = pick(rng, ANY)
    silver = sh.hsv(0.0, 0.0, 0.8)
    diffuse, spec = _cylinder(p.v, rng.uniform(-0.5, 0.5), 0.15)
    lo = rng.uniform(-0.3, 0.3)
    hi = lo + rng.uniform(0.25, 0.5)
    rgb = np.where(((p.u > lo) & (p.u < hi))[..., None], band, body)
    rgb = np.where(((p.u > 0.8) | (p.u < -0.9))[..., None], silver, rgb)
    rgb = diffuse[..., None] * rgb + 0.55 * spec[..., None]
    return np.clip(rgb, 0, 1), 1.0


def _clothing(rng: np.random.Generator, p: Patch):
    c1, c2 = pick(rng, PALETTES["cloth"]), pick(rng, PALETTES["cloth"])
    kind = rng.integers(5)
    a = rng.uniform(0, np.pi)
    s1 = np.cos(a) * p.up + np.sin(a) * p.vp
    s2 = -np.sin(a) * p.up + np.cos(a) * p.vp
    period = rng.uniform(14, 30)
    stripes = (np.sin(s1 * 2 * np.pi / period) > 0).astype(np.float32)
    if kind >= 3:  # plaid
        stripes = 0.5 * stripes + 0.5 * (np.sin(s2 * 2 * np.pi / period) > 0)
    elif kind == 2:  # solid
        stripes = np.zeros_like(stripes)
    weave_p = rng.uniform(6, 8)
    weave = np.sin(s1 * 2 * np.pi / weave_p) * np.sin(s2 * 2 * np.pi / weave_p)
    folds = 0.7 + 0.45 * _noise(rng, p, 45)
    rgb = sh.mix(sh.paint(c1, np.ones(p.shape)), sh.paint(c2, np.ones(p.shape)), stripes)
    return rgb * (folds * (1.0 + 0.15 * weave))[..., None], 1.0


# --------------------------------------------------------------------------- outlines


def _blob(wobble: float, jitter: float) -> Outline:
    def outline(rng, length, width):
        return sh.blob_outline(rng, length, width, wobble=wobble, jitter=jitter), {}

    return outline


def _box(rng, length, width):
    out, shift = sh.box_outline(rng, length, width)
    return out, {"shift": shift, "half_length": length / 2, "half_width": width / 2}


def _can(rng, length, width):
    return sh.capsule_outline(length, width, end_depth=rng.uniform(0.05, 0.15) * width), {}


def _battery_outline(rng, length, width):
    return sh.capsule_outline(length, width, end_depth=0.08 * width, nub=0.35), {}


def _bottle(rng, length, width):
    return sh.bottle_outline(rng, length, width), {}


def _plastic_outline(rng, length, width):
    if rng.random() < 0.6:
        return sh.bottle_outline(rng, length, width), {}
    return sh.blob_outline(rng, length, width * 1.6, wobble=0.2, jitter=0.01), {}


def _foam_outline(rng, length, width):
    if rng.random() < 0.3:
        return sh.blob_outline(rng, length, width, wobble=0.3, jitter=0.04), {}
    return sh.rounded_rect_outline(rng, length, width, rng.uniform(0.1, 0.3) * width), {}


def _paper_outline(rng, length, width):
    return sh.torn_rect_outline(rng, length, width), {}


FAMILIES: dict[int, Family] = {
    1: Family((125, 235), (0.6, 1.0), _blob(0.35, 0.02), _unknown),
    2: Family((135, 250), (0.55, 1.0), _blob(0.4, 0.07), _general_trash),
    3: Family((120, 240), (0.5, 0.85), _paper_outline, _paper),
    4: Family((110, 210), (0.45, 0.8), _box, _paper_pack),
    5: Family((130, 240), (0.42, 0.65), _can, _metal),
    6: Family((170, 300), (0.33, 0.48), _bottle, _glass),
    7: Family((145, 280), (0.32, 0.55), _plastic_outline, _plastic),
    8: Family((120, 240), (0.5, 0.9), _foam_outline, _styrofoam),
    9: Family((150, 260), (0.6, 1.0), _blob(0.3, 0.02), _plastic_bag),
    10: Family((120, 190), (0.26, 0.36), _battery_outline, _battery),
    11: Family((135, 250), (0.5, 0.9), _blob(0.45, 0.03), _clothing),
}
"""Look of each category id."""


# ------------------------------------------------------------------------- background


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A floor or table: wood, concrete, tiles or a cloth mat, shape (H, W, 3)."""
    y = np.arange(height, dtype=np.float32)[:, None]
    x = np.arange(width, dtype=np.float32)[None, :]
    a = rng.uniform(0, np.pi)
    along, across = np.cos(a) * x + np.sin(a) * y, -np.sin(a) * x + np.cos(a) * y
    low = sh.fractal_noise(rng, height, width, 120, 2)
    kind = int(rng.integers(4))
    if kind == 0:  # wood planks
        col = sh.hsv(rng.uniform(0.06, 0.1), rng.uniform(0.35, 0.55), rng.uniform(0.45, 0.7))
        warp = 30.0 * sh.smooth_noise(rng, height, width, 80)
        grain = np.sin((across + warp) * 2 * np.pi / rng.uniform(10, 25))
        plank = rng.uniform(80, 150)
        seam = np.abs(((across + plank / 2) % plank) - plank / 2) < 1.5
        shade = (0.85 + 0.3 * low + 0.07 * grain) * (1.0 - 0.4 * seam)
    elif kind == 1:  # concrete
        col = sh.hsv(rng.uniform(0.05, 0.15), rng.uniform(0.03, 0.12), rng.uniform(0.4, 0.6))
        speck = sh.smooth_noise(rng, height, width, 2)
        shade = 0.8 + 0.3 * sh.fractal_noise(rng, height, width, 60, 3) + 0.15 * speck
    elif kind == 2:  # tiles
        col = sh.hsv(rng.random(), rng.uniform(0.0, 0.12), rng.uniform(0.72, 0.88))
        size = rng.uniform(60, 130)
        gu, gv = (along % size) < 4, (across % size) < 4
        tile = _hash(np.floor(along / size), np.floor(across / size))
        shade = (0.9 + 0.1 * tile + 0.15 * low) * (1.0 - 0.45 * (gu | gv))
    else:  # cloth mat / table top
        col = sh.hsv(rng.random(), rng.uniform(0.2, 0.4), rng.uniform(0.3, 0.5))
        shade = 0.8 + 0.35 * low + 0.06 * sh.smooth_noise(rng, height, width, 3)
    return sh.paint(col, shade)
