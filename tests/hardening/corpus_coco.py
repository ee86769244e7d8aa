"""Bad COCO files for ``tseg-infer --coco ... --eval``: geometry, sizes, ids, paths, JSON itself.

Each case copies the tiny dataset and changes its val.json in one way. The first image of
val.json is ``rgb/006.jpg`` (72 x 56) with three annotations: a polygon, a compressed RLE and
an uncompressed RLE, in that order. ``--eval`` makes even the old code decode annotations.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable

from tests.hardening.cases import Case, Sandbox

POLYGON, COMPRESSED, UNCOMPRESSED = 0, 1, 2
HEIGHT, WIDTH = 72, 56


def raw(token: str) -> str:
    """A placeholder that :func:`dump` writes as the bare JSON token (e.g. ``1e400``)."""
    return f"@@{token}@@"


def dump(data: object) -> str:
    """json.dumps, with :func:`raw` placeholders replaced by their tokens."""
    return re.sub(r'"@@(.*?)@@"', r"\1", json.dumps(data))


def coco_args(box: Sandbox, json_path, *, model=None, out=None, evaluate: bool = True, extra=()) -> list[str]:
    """tseg-infer arguments for a COCO split, writing to ``out`` (default out/pred)."""
    model = model if model is not None else box.model()
    out = out if out is not None else box.out / "pred"
    args = ["--coco", box.rel(json_path), "--model", box.rel(model), "--out", box.rel(out), "-q"]
    return args + (["--eval"] if evaluate else []) + list(extra)


def _split_case(name: str, content: Callable[[dict, Sandbox], str | bytes]) -> Case:
    """A case whose val.json is ``content(data, box)``, data being the tiny val.json."""

    def build(box: Sandbox) -> list[str]:
        path = box.coco() / "val.json"
        text = content(json.loads(path.read_text()), box)
        path.write_bytes(text.encode() if isinstance(text, str) else text)
        return coco_args(box, path)

    return Case(name, "infer", build)


def coco_case(name: str, change: Callable[[dict, Sandbox], object]) -> Case:
    """A case whose val.json is the tiny one after ``change(data, box)`` edited it in place."""

    def content(data: dict, box: Sandbox) -> str:
        change(data, box)
        return dump(data)

    return _split_case(f"coco/{name}", content)


def json_case(name: str, content: Callable[[dict], str | bytes]) -> Case:
    """A case whose val.json is ``content(data)``: text or bytes the JSON parser must cope with."""
    return _split_case(f"json/{name}", lambda data, box: content(data))


def _segmentation(index: int, value: object) -> Callable[[dict, Sandbox], None]:
    def change(data: dict, box: Sandbox) -> None:
        data["annotations"][index]["segmentation"] = value

    return change


def _counts(value: object) -> Callable[[dict, Sandbox], None]:
    def change(data: dict, box: Sandbox) -> None:
        data["annotations"][UNCOMPRESSED]["segmentation"]["counts"] = value

    return change


def _image(key: str, value: object) -> Callable[[dict, Sandbox], None]:
    def change(data: dict, box: Sandbox) -> None:
        data["images"][0][key] = value

    return change


def _category(index: int, key: str, value: object) -> Callable[[dict, Sandbox], None]:
    def change(data: dict, box: Sandbox) -> None:
        data["categories"][index][key] = value

    return change


def _polygon(*coords: object) -> Callable[[dict, Sandbox], None]:
    return _segmentation(POLYGON, [list(coords)])


def _wrong_total_rle(data: dict, box: Sandbox) -> None:
    """A valid compressed RLE of a 10 x 10 mask, claimed to be 72 x 56."""
    import numpy as np
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))
    data["annotations"][COMPRESSED]["segmentation"] = {"size": [HEIGHT, WIDTH], "counts": rle["counts"].decode()}


def _file_elsewhere(data: dict, box: Sandbox, *, absolute: bool) -> None:
    """file_name pointing at a copy of the image outside the data root: <sandbox>/elsewhere/photo.jpg."""
    target = box.root / "elsewhere" / "photo.jpg"
    target.parent.mkdir()
    shutil.copyfile(box.fixtures.coco / "rgb" / "006.jpg", target)
    data["images"][0]["file_name"] = str(target) if absolute else "../../elsewhere/photo.jpg"


def _duplicate(key: str) -> Callable[[dict, Sandbox], None]:
    def change(data: dict, box: Sandbox) -> None:
        data[key][1]["id"] = data[key][0]["id"]

    return change


def _folder_case() -> Case:
    def build(box: Sandbox) -> list[str]:
        root = box.coco()
        (root / "val.json").unlink()
        (root / "val.json").mkdir()
        return coco_args(box, root / "val.json")

    return Case("json/folder-named-val-json", "infer", build)


HUGE_INT = "1" + "0" * 5000

COCO_CASES = [
    # Polygon geometry: numbers that are not numbers, absurd coordinates, wrong shapes.
    coco_case("polygon-nan-literal", _polygon(4, 4, raw("NaN"), 4, 24, 24)),
    coco_case("polygon-overflow-1e400", _polygon(4, 4, raw("1e400"), 4, 24, 24)),
    coco_case("polygon-infinity", _polygon(4, 4, raw("Infinity"), 4, 24, 24)),
    coco_case("polygon-minus-infinity", _polygon(4, 4, raw("-Infinity"), 4, 24, 24)),
    coco_case("polygon-1e12", _polygon(4, 4, 1e12, 4, 1e12, 1e12)),
    coco_case("polygon-minus-1e12", _polygon(4, 4, -1e12, 4, 24, -1e12)),
    coco_case("polygon-far-outside-1e6", _polygon(4, 4, 1e6, 4, 1e6, 1e6)),
    coco_case("polygon-odd-length", _polygon(4, 4, 24, 4, 24, 24, 4)),
    coco_case("polygon-two-points", _polygon(4, 4, 24, 24)),
    coco_case("polygon-strings", _polygon("4", "4", "24", "4", "24", "24")),
    coco_case("polygon-bools", _polygon(True, True, False, True, True, False)),
    coco_case("polygon-null", _polygon(4, None, 24, 4, 24, 24)),
    coco_case("polygon-nested-points", _segmentation(POLYGON, [[[4, 4], [24, 4], [24, 24]]])),
    coco_case("polygon-not-a-list", _segmentation(POLYGON, [5])),
    coco_case("segmentation-string", _segmentation(POLYGON, "4,4,24,4,24,24")),
    coco_case("segmentation-number", _segmentation(POLYGON, 7)),
    # RLE: counts and sizes that do not describe the image.
    coco_case("rle-counts-negative", _counts([-5, HEIGHT * WIDTH + 5])),
    coco_case("rle-counts-sum-short", _counts([100, 50])),
    coco_case("rle-counts-sum-long", _counts([HEIGHT * WIDTH, HEIGHT * WIDTH])),
    coco_case("rle-counts-floats", _counts([100.5, HEIGHT * WIDTH - 100.5])),
    coco_case("rle-counts-huge", _counts([2**40, 5])),
    coco_case("rle-counts-dict", _counts({"a": 1})),
    coco_case(
        "rle-size-wrong", _segmentation(UNCOMPRESSED, {"size": [HEIGHT + 1, WIDTH], "counts": [HEIGHT * WIDTH + WIDTH]})
    ),
    coco_case("rle-size-string", _segmentation(COMPRESSED, {"size": "72x56", "counts": "T>>j1lR2"})),
    coco_case("rle-compressed-garbage", _segmentation(COMPRESSED, {"size": [HEIGHT, WIDTH], "counts": "!!!!~~~~\x7f"})),
    coco_case("rle-compressed-wrong-total", _wrong_total_rle),
    # Image sizes.
    coco_case("width-zero", _image("width", 0)),
    coco_case("height-negative", _image("height", -72)),
    coco_case("width-1e9", _image("width", 10**9)),
    coco_case("width-float", _image("width", 56.5)),
    coco_case("height-string", _image("height", "72")),
    coco_case("width-bool", _image("width", True)),
    coco_case("height-null", _image("height", None)),
    # Ids.
    coco_case("image-id-numeric-string", _image("id", "142")),
    coco_case("image-id-float", _image("id", 142.5)),
    coco_case("image-id-bool", _image("id", True)),
    coco_case("image-id-duplicate", _duplicate("images")),
    coco_case("category-id-numeric-string", _category(0, "id", "7")),
    coco_case("category-id-duplicate", _duplicate("categories")),
    coco_case("category-name-empty", _category(1, "name", "")),
    coco_case("categories-empty", lambda data, box: data.update(categories=[])),
    coco_case("annotation-image-id-string", lambda data, box: data["annotations"][0].update(image_id="142")),
    coco_case("annotation-unknown-category", lambda data, box: data["annotations"][0].update(category_id=99)),
    coco_case("annotation-without-segmentation", lambda data, box: data["annotations"][0].pop("segmentation")),
    # File names that escape the data root or are not paths.
    coco_case("file-name-absolute", lambda data, box: _file_elsewhere(data, box, absolute=True)),
    coco_case("file-name-dotdot", lambda data, box: _file_elsewhere(data, box, absolute=False)),
    coco_case("file-name-nul", _image("file_name", "rgb/006\u0000.jpg")),
    coco_case("file-name-empty", _image("file_name", "")),
    coco_case("file-name-is-folder", _image("file_name", "rgb")),
    coco_case("file-name-number", _image("file_name", 42)),
    # JSON that Python's parser cannot take, or that is not a COCO object.
    json_case("deep-nesting", lambda data: '{"images": ' + "[" * 100_000 + "]" * 100_000 + "}"),
    json_case("huge-integer", lambda data: dump(data).replace('"id": 142,', f'"id": {HUGE_INT},', 1)),
    json_case("bad-utf8", lambda data: dump(data).encode().replace(b"Metal", b"Met\xff\xfel")),
    json_case("utf16-with-bom", lambda data: dump(data).encode("utf-16")),
    json_case("empty-file", lambda data: b""),
    json_case("truncated", lambda data: dump(data)[: len(dump(data)) // 2]),
    json_case("top-level-list", lambda data: dump([data])),
    json_case("top-level-nan", lambda data: "NaN"),
    json_case("images-not-a-list", lambda data: dump({**data, "images": {"0": data["images"][0]}})),
    json_case("image-entry-not-an-object", lambda data: dump({**data, "images": [5]})),
    json_case("annotations-not-a-list", lambda data: dump({**data, "annotations": {"a": 1}})),
    _folder_case(),
]
