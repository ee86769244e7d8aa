"""Checks on a COCO JSON before any of it reaches pycocotools.

pycocotools trusts its input: a polygon at x=1e12 makes it allocate gigabytes, NaN
coordinates are undefined behaviour in C, and RLE counts that do not add up to the
image's pixel count write past the end of the mask. Everything is checked here
first, and a bad value gives one :class:`TsegError` naming the file, the annotation
and the image.

The rules for geometry (chosen to accept real datasets, whose polygons often
overshoot the border by a little):

- polygon coordinates are finite and lie within one image size of the image on
  every side: ``-width <= x <= 2 * width`` and ``-height <= y <= 2 * height``;
- an annotation's polygons together are at most :data:`OUTLINE_FACTOR` times the
  image's ``height + width`` long (each edge counted as ``max(|dx|, |dy|) + 1``
  pixels, which is what pycocotools' rasteriser allocates for), i.e. the outline
  may go around the image 128 times;
- RLE ``size`` is the image's ``[height, width]`` and its run lengths are
  non-negative and add up to exactly ``height * width``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import open_input

MAX_SIDE = 100_000
"""Largest width or height accepted in a COCO ``images`` entry."""

MAX_PIXELS = 2**31 - 1
"""Largest height * width pycocotools can index (its run lengths are 32-bit)."""

OUTLINE_FACTOR = 256
"""An annotation's polygon outline may be this many times ``height + width`` long."""

INT64_RANGE = (-(2**63), 2**63 - 1)

_LONGEST_RUN_CODE = 6
"""Characters per run length in compressed RLE: 6 hold 30 bits, enough for any image
of at most MAX_PIXELS (pycocotools' decoder overflows on longer codes)."""

_PLAIN_INTS = frozenset({int})
_PLAIN_REALS = frozenset({int, float})


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _refuse_constant(name: str) -> None:
    raise _NotANumber(name)


class _NotANumber(ValueError):
    """Raised while parsing for the NaN/Infinity literals that Python's json accepts."""


def load_json(path: Path) -> dict:
    """Reads a COCO JSON file as a dict; every way it can fail is one TsegError naming the file.

    Refused: a folder or other non-file, an empty file, text that is not UTF-8, invalid
    JSON, ``NaN``/``Infinity`` literals, nesting deeper than Python's parser can take,
    integers with more digits than Python converts, and a top level that is not an object.
    """
    path = Path(path)
    if path.is_dir():
        raise TsegError(f"{path} is a folder: need a COCO annotation file (.json)")
    if not path.exists():
        raise TsegError(f"annotation file not found: {path}")
    if not path.is_file():
        raise TsegError(f"{path} is not a regular file: need a COCO annotation file (.json)")
    try:
        with open_input(path, what="annotation") as handle:
            text = handle.read().decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise TsegError(f"{path} is not valid JSON: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise TsegError(f"cannot read {path}: {err.strerror or err}") from None
    if not text.strip():
        raise TsegError(f"{path} is empty: need a COCO JSON object")
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except _NotANumber as err:
        raise TsegError(f"{path} is not valid JSON: {err} is not a number JSON allows") from None
    except RecursionError:
        raise TsegError(f"{path} is not usable JSON: it is nested too deeply for Python's parser") from None
    except ValueError as err:  # JSONDecodeError, or an integer too long to convert
        if "integer string conversion" in str(err):
            raise TsegError(f"{path} is not usable JSON: it holds an integer with thousands of digits") from None
        raise TsegError(f"{path} is not valid JSON: {_one_line(str(err))}") from None
    del text
    if not isinstance(data, dict):
        raise TsegError(f"{path}: need a COCO object at the top level, got {type(data).__name__}")
    return data


def is_int(value: Any) -> bool:
    """True for Python/NumPy integers, False for bools, floats and strings."""
    if type(value) in _PLAIN_INTS:
        return True
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_int(value: Any, *, what: str, low: int = INT64_RANGE[0], high: int = INT64_RANGE[1]) -> int:
    """``value`` as an int if it is an integer (not a bool, float or string) in [low, high].

    Raises:
        TsegError: naming ``what``, the range and the value.
    """
    if not is_int(value) or not low <= value <= high:
        raise TsegError(f"{what}: need an integer in [{low}, {high}], got {_short(value)}")
    return int(value)


def check_name(value: Any, *, what: str) -> str:
    """A non-empty, single-line string.

    Raises:
        TsegError: it is not a string, empty, or has line breaks or other control characters.
    """
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise TsegError(f"{what}: need a non-empty printable string, got {_short(value)}")
    return value


def _short(value: Any, limit: int = 80) -> str:
    text = _one_line(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_segmentation(seg: Any, *, height: int, width: int, where: str) -> None:
    """Checks polygons or RLE against the image size, so that pycocotools can decode them safely.

    Args:
        seg: an annotation's ``segmentation``: a list of flat ``[x1, y1, x2, y2, ...]``
            polygons, or RLE ``{"size": [h, w], "counts": list | str}``.
        height: the image's height.
        width: the image's width.
        where: names the annotation in errors (file, annotation id, image).

    Raises:
        TsegError: the segmentation is malformed or out of bounds (see the module's rules).
    """
    if isinstance(seg, list):
        _check_polygons(seg, height, width, where)
    elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
        _check_rle(seg, height, width, where)
    else:
        raise TsegError(f"{where}: need polygons (a list) or RLE (counts and size), got {_short(seg)}")


def _check_polygons(polygons: list, height: int, width: int, where: str) -> None:
    outline = 0.0
    for index, polygon in enumerate(polygons):
        if not isinstance(polygon, (list, tuple)):
            raise TsegError(f"{where}: polygon {index} must be a list of numbers, got {_short(polygon)}")
        if not polygon:
            continue  # an empty polygon adds nothing (some tools write [[]])
        if len(polygon) < 6 or len(polygon) % 2:
            raise TsegError(
                f"{where}: need polygons of >= 3 (x, y) points (an even count >= 6 numbers),"
                f" got {len(polygon)} numbers in polygon {index}"
            )
        points = _polygon_points(polygon, index, where)
        _check_bounds(points, height, width, f"{where}, polygon {index}")
        steps = np.abs(points[1:] - points[:-1]).max(axis=1).sum()
        closing = np.abs(points[0] - points[-1]).max()
        outline += float(steps + closing) + len(points)
    limit = OUTLINE_FACTOR * (height + width)
    if outline > limit:
        raise TsegError(
            f"{where}: the polygons' outline is {outline:.0f} pixels long, over the limit of {limit}"
            f" ({OUTLINE_FACTOR} x (height + width), which bounds the memory pycocotools needs to draw it)"
        )


def _polygon_points(polygon: Sequence, index: int, where: str) -> np.ndarray:
    """(N, 2) float64 (x, y) points of a flat polygon whose values are all real numbers."""
    if not set(map(type, polygon)) <= _PLAIN_REALS:
        for v in polygon:
            if not (isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))):
                raise TsegError(f"{where}: polygon {index} must hold numbers only, got {_short(v)}")
    try:
        points = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    except OverflowError:
        raise TsegError(f"{where}: polygon {index} has a coordinate too large for a float") from None
    return points


def _check_bounds(points: np.ndarray, height: int, width: int, where: str) -> None:
    low, high = points.min(axis=0), points.max(axis=0)  # NaN propagates into both
    if not (np.isfinite(low).all() and np.isfinite(high).all()):
        raise TsegError(f"{where}: coordinates must be finite numbers, got {_short(points[~np.isfinite(points)][0])}")
    for axis, name, size in ((0, "x", width), (1, "y", height)):
        if low[axis] < -size or high[axis] > 2 * size:
            bad = float(low[axis] if low[axis] < -size else high[axis])
            raise TsegError(
                f"{where}: {name} coordinate {bad:g} is far outside the {width}x{height} image"
                f" (need {-size} <= {name} <= {2 * size})"
            )


def _check_rle(seg: dict, height: int, width: int, where: str) -> None:
    size = seg["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(is_int(v) for v in size):
        raise TsegError(f"{where}: RLE size must be [height, width] integers, got {_short(size)}")
    if [int(v) for v in size] != [height, width]:
        raise TsegError(f"{where}: RLE size {list(size)} differs from the image's [height, width] {[height, width]}")
    counts = seg["counts"]
    if isinstance(counts, list):
        runs = _uncompressed_counts(counts, where)
    elif isinstance(counts, (str, bytes)):
        runs = compressed_counts(counts, where=where)
    else:
        raise TsegError(f"{where}: RLE counts must be a list of run lengths or a string, got {_short(counts)}")
    total = int(runs.sum())
    if total != height * width:
        raise TsegError(
            f"{where}: RLE run lengths add up to {total} pixels, need {height * width} ({height}x{width})"
        )


def _uncompressed_counts(counts: list, where: str) -> np.ndarray:
    if not set(map(type, counts)) <= _PLAIN_INTS and not all(is_int(v) for v in counts):
        bad = next(v for v in counts if not is_int(v))
        raise TsegError(f"{where}: RLE counts must be integers, got {_short(bad)}")
    if not counts:
        return np.zeros(0, dtype=np.int64)
    if min(counts) < 0 or max(counts) > MAX_PIXELS:
        bad = min(counts) if min(counts) < 0 else max(counts)
        raise TsegError(f"{where}: RLE run lengths must be in [0, {MAX_PIXELS}], got {bad}")
    return np.asarray(counts, dtype=np.int64)


def compressed_counts(counts: str | bytes, *, where: str) -> np.ndarray:
    """Decodes COCO's compressed RLE string into run lengths, as pycocotools' rleFrString does.

    The string holds one variable-length code per run (5 bits per character, ASCII
    48..111, bit 0x20 = more characters follow, bit 0x10 of the last one = negative);
    from the fourth run on, each code is the difference to the run two before.

    Args:
        counts: the ``counts`` string.
        where: names the annotation in errors.

    Returns:
        (M,) int64 run lengths (not yet checked against the image size).

    Raises:
        TsegError: a character outside '0'..'o', a code cut off at the end, a code too
            long for a 32-bit run, or a negative run.
    """
    raw = counts.encode("utf-8") if isinstance(counts, str) else bytes(counts)
    codes = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if codes.size == 0:
        raise TsegError(f"{where}: compressed RLE counts are empty")
    if ((codes < 0) | (codes > 63)).any():
        bad = raw[int(np.flatnonzero((codes < 0) | (codes > 63))[0])]
        raise TsegError(f"{where}: compressed RLE counts may only hold characters '0'..'o', got {bytes([bad])!r}")
    more = (codes & 0x20) != 0
    if more[-1]:
        raise TsegError(f"{where}: compressed RLE counts end in the middle of a run length")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _LONGEST_RUN_CODE:
        raise TsegError(f"{where}: compressed RLE counts hold a run length too large for any image")
    position = np.arange(codes.size) - np.repeat(starts, lengths)
    values = np.add.reduceat((codes & 0x1F) << (5 * position), starts)
    values = np.where((codes[ends] & 0x10) != 0, values - (1 << (5 * lengths)), values)
    runs = values.copy()
    runs[1::2] = np.cumsum(values[1::2])  # run i (i > 2) is stored relative to run i - 2
    runs[2::2] = np.cumsum(values[2::2])
    if (runs < 0).any():
        raise TsegError(f"{where}: compressed RLE counts decode to a negative run length")
    return runs
