"""Bad inputs for tseg-infer: outputs that overwrite inputs, bad images, bad models, ignored settings.

Models are hand-built 1x1 convolutions (tests/hardening/onnx_files.py) with the tiny
dataset's four classes, so a case costs bytes, not a 44 MB copy; a few cases use the real
tiny exported model.
"""

from __future__ import annotations

import importlib.util
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

from tests.hardening.cases import Case, Sandbox, SkipCase
from tests.hardening.corpus_coco import coco_args
from tests.hardening.onnx_files import CLASSES, metadata_props


def infer_args(box: Sandbox, *paths, model=None, out=None, extra=()) -> list[str]:
    """tseg-infer arguments for image files/folders, writing to ``out`` (default out/labels; False: none)."""
    model = model if model is not None else box.model()
    out = out if out is not None else box.out / "labels"
    out_args = ["--out", box.rel(out)] if out is not False else []
    return [*(box.rel(p) for p in paths), "--model", box.rel(model), *out_args, "-q", *extra]


def _case(name: str, build: Callable[[Sandbox], list[str]], *, expect_ok: bool = False, failures: int = 0) -> Case:
    return Case(name, "infer", build, expect_ok=expect_ok, failures=failures)


# --- 1. outputs that would overwrite inputs or land in an input folder ------------------------


def _two_inputs_one_png(box: Sandbox) -> list[str]:
    folder = box.photos()
    shutil.copyfile(folder / "b.png", folder / "a.png")  # a.jpg and a.png both map to a.png
    return infer_args(box, folder)


def _out_symlink_to_input(box: Sandbox) -> list[str]:
    folder = box.photos()
    (box.root / "labels-link").symlink_to(folder, target_is_directory=True)
    return infer_args(box, folder, out=box.root / "labels-link")


def _data_root_out(box: Sandbox) -> list[str]:
    root = box.coco()
    split = box.inputs / "ann" / "val.json"
    split.parent.mkdir()
    shutil.move(root / "val.json", split)
    return coco_args(box, split, out=root / "pred", evaluate=False, extra=["--data", box.rel(root)])


OVERWRITE_CASES = [
    _case("overwrite/out-is-input-folder", lambda box: infer_args(box, box.photos(), out=box.photos())),
    _case(
        "overwrite/out-inside-input-folder",
        lambda box: infer_args(box, box.photos(), out=box.photos() / "labels"),
    ),
    _case(
        "overwrite/out-is-folder-of-input-file",
        lambda box: infer_args(box, box.photos() / "a.jpg", out=box.photos()),
    ),
    _case(
        "overwrite/out-is-coco-root",
        lambda box: coco_args(box, box.coco() / "val.json", out=box.coco(), evaluate=False),
    ),
    _case(
        "overwrite/out-inside-coco-root",
        lambda box: coco_args(box, box.coco() / "val.json", out=box.coco() / "rgb", evaluate=False),
    ),
    _case("overwrite/out-inside-data-root", _data_root_out),
    _case("overwrite/two-inputs-one-png", _two_inputs_one_png),
    _case("overwrite/out-is-symlink-to-input", _out_symlink_to_input),
    _case(
        "overwrite/out-is-existing-file",
        lambda box: infer_args(box, box.photos(), out=box.write("notes.txt", "keep me\n")),
    ),
]


# --- 5. images ---------------------------------------------------------------------------------


def bilevel_png(width: int, height: int) -> bytes:
    """A 1-bit all-black PNG of any size, a few KB on disk (zlib of zero rows, streamed)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    body = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def _image_case(
    name: str, make: Callable[[Sandbox], object], *, direct: bool = False, failures: int = 1, extra=()
) -> Case:
    """inputs/photos holds one bad image (``make`` writes it); the folder, or the file, is segmented.

    A bad image is a per-image failure (a ``failed:`` line, errors.txt, the others still written,
    exit 1); ``failures=0`` where nothing is left to segment (a one-line error before any work).
    """

    def build(box: Sandbox) -> list[str]:
        folder = box.inputs / "photos"
        folder.mkdir()
        target = make(box)
        return infer_args(box, target if direct else folder, extra=extra)

    return _case(f"image/{name}", build, failures=failures)


def _copy_part(source: str, target: str, fraction: float) -> Callable[[Sandbox], object]:
    def make(box: Sandbox):
        data = (box.fixtures.coco / source).read_bytes()
        return box.write(target, data[: int(len(data) * fraction)])

    return make


def _corrupt_png(box: Sandbox):
    data = bytearray((box.fixtures.coco / "gray" / "001.png").read_bytes())
    idat = data.index(b"IDAT")
    data[idat + 10 : idat + 30] = b"\xff" * 20
    return box.write("photos/corrupt.png", bytes(data))


def _size_disagrees_with_coco(box: Sandbox) -> list[str]:
    """val.json says rgb/006.jpg is 56x72; the file is a 30x40 JPEG."""
    from PIL import Image

    path = box.coco() / "rgb" / "006.jpg"
    with Image.open(path) as image:
        image.resize((30, 40)).save(path, quality=95)
    return coco_args(box, box.coco() / "val.json")


def _one_good_one_bad(box: Sandbox):
    shutil.copyfile(box.fixtures.coco / "rgb" / "000.jpg", box.inputs / "photos" / "a.jpg")
    return box.write("photos/b.png", "this is not a PNG\n")


def _two_bad(box: Sandbox):
    _one_good_one_bad(box)
    return box.write("photos/c.jpg", b"\xff\xd8\xff not a JPEG")


IMAGE_CASES = [
    _image_case("bomb-400-mpx", lambda box: box.write("photos/bomb.png", bilevel_png(20_000, 20_000))),
    _image_case("bomb-100-mpx", lambda box: box.write("photos/big.png", bilevel_png(10_000, 10_000))),
    _image_case("truncated-jpeg", _copy_part("rgb/000.jpg", "photos/cut.jpg", 0.5)),
    _image_case("truncated-png", _copy_part("gray/001.png", "photos/cut.png", 0.6)),
    _image_case("corrupt-png-data", _corrupt_png),
    _image_case("zero-byte-jpg", lambda box: box.write("photos/empty.jpg", b"")),
    _image_case("text-named-png", lambda box: box.write("photos/notes.png", "hello\n")),
    _image_case("text-named-png-given-directly", lambda box: box.write("photos/notes.png", "hi\n"), direct=True),
    _image_case("folder-named-jpg", lambda box: (box.inputs / "photos" / "x.jpg").mkdir(), failures=0),
    _image_case("one-good-one-bad", _one_good_one_bad),
    _image_case("one-good-one-bad-fail-fast", _one_good_one_bad, extra=["--fail-fast"]),
    _image_case("two-bad-batch-1-sequential", _two_bad, failures=2, extra=["--batch-size", "1", "--workers", "0"]),
    _case("image/size-disagrees-with-coco", _size_disagrees_with_coco, failures=1),
]


# --- 3. model files --------------------------------------------------------------------------


def _model_case(name: str, make: Callable[[Sandbox], object]) -> Case:
    """Segments inputs/photos with the model file that ``make`` writes."""
    return _case(f"model/{name}", lambda box: infer_args(box, box.photos(), model=make(box)))


def _meta(name: str, overrides: dict | None = None, **kwargs) -> Case:
    """A hand-built model whose tseg metadata has ``overrides`` (see metadata_props)."""
    return _model_case(name, lambda box: box.model(props=metadata_props(overrides, **kwargs)))


def _truncated_real(box: Sandbox):
    data = box.fixtures.model.read_bytes()
    return box.write("truncated.onnx", data[: len(data) // 2])


def _png_model(box: Sandbox):
    return box.write("model.onnx", (box.fixtures.coco / "gray" / "001.png").read_bytes())


def _folder_model(box: Sandbox):
    (box.inputs / "model.onnx").mkdir()
    return box.inputs / "model.onnx"


def _eval_class_mismatch(box: Sandbox) -> list[str]:
    three = {"classes": CLASSES[:3], "palette": [[0, 0, 0], [128, 0, 0], [0, 128, 0]]}
    model = box.model(props=metadata_props(three), channels=3)
    return coco_args(box, box.coco() / "val.json", model=model)


MODEL_CASES = [
    _model_case("text-file", lambda box: box.write("model.onnx", "not a model\n")),
    _model_case("png-file", _png_model),
    _model_case("empty-file", lambda box: box.write("model.onnx", b"")),
    _model_case("truncated-real-model", _truncated_real),
    _model_case("folder", _folder_model),
    _model_case("missing", lambda box: box.inputs / "nope.onnx"),
    _model_case("no-tseg-metadata", lambda box: box.model(props={})),
    _meta("metadata-not-json", raw={"classes": '["Background", '}),
    _meta("mean-nan", {"mean": [float("nan"), 0.456, 0.406]}),
    _meta("mean-strings", {"mean": ["a", "b", "c"]}),
    _meta("mean-two-values", {"mean": [0.5, 0.5]}),
    _meta("mean-not-a-list", {"mean": 0.5}),
    _meta("std-zero", {"std": [0.229, 0.0, 0.225]}),
    _meta("std-negative", {"std": [0.229, -0.224, 0.225]}),
    _meta("std-infinite", {"std": [float("inf"), 0.224, 0.225]}),
    _meta("palette-300", {"palette": [[0, 0, 0], [300, 0, 0], [0, 128, 0], [128, 128, 0]]}),
    _meta("palette-negative", {"palette": [[0, 0, 0], [-1, 0, 0], [0, 128, 0], [128, 128, 0]]}),
    _meta("palette-wrong-length", {"palette": [[0, 0, 0], [128, 0, 0]]}),
    _meta("palette-strings", {"palette": [["r", "g", "b"]] * 4}),
    _meta("palette-pairs", {"palette": [[0, 0], [1, 1], [2, 2], [3, 3]]}),
    _meta("palette-number", {"palette": 5}),
    _meta("classes-empty", {"classes": []}),
    _meta("classes-duplicate", {"classes": ["Background", "Metal", "Metal", "Glass"]}),
    _meta("classes-not-strings", {"classes": [0, 1, 2, 3]}),
    _meta("classes-one-string", {"classes": "abcd"}),
    _meta("classes-empty-name", {"classes": ["Background", "", "Paper", "Glass"]}),
    _meta("input-size-zero", {"input_size": [0, 32]}),
    _meta("input-size-huge", {"input_size": [100_000, 100_000]}),
    _meta("input-size-strings", {"input_size": ["32", "x"]}),
    _meta("input-size-fraction", {"input_size": [32.5, 32]}),
    _meta("input-size-overflow", raw={"input_size": "[1e400, 32]"}),
    _meta("input-size-three-values", {"input_size": [32, 32, 32]}),
    _meta("schema-99", schema="99"),
    _meta("extra-not-an-object", {"extra": "text"}),
    _model_case("channels-more-than-classes", lambda box: box.model(channels=len(CLASSES) + 1)),
    _model_case("channels-fewer-than-classes", lambda box: box.model(channels=len(CLASSES) - 1)),
    _model_case("two-inputs", lambda box: box.model(two_inputs=True)),
    _model_case("input-one-channel", lambda box: box.model(in_channels=1)),
    _case("model/eval-class-count-mismatch", _eval_class_mismatch),
]


# --- 8. settings that would be silently ignored ---------------------------------------------


def _photos_with(*extra: str) -> Callable[[Sandbox], list[str]]:
    return lambda box: infer_args(box, box.photos(), extra=extra)


def _tune(*, with_paths: bool = False, with_out: bool = False) -> Callable[[Sandbox], list[str]]:
    def build(box: Sandbox) -> list[str]:
        args = ["--coco", box.rel(box.coco() / "val.json"), "--model", box.rel(box.model()), "--crf-tune", "-q"]
        args += ["--tune-images", "1"]
        if with_paths:
            args = [box.rel(box.photos())] + args
        if with_out:
            args += ["--out", box.rel(box.out / "pred")]
        return args

    return build


def _without_cuda_crf(build: Callable[[Sandbox], list[str]]) -> Callable[[Sandbox], list[str]]:
    """``build``, on a machine where the CUDA CRF cannot run (no GPU, or no numba-cuda); skipped elsewhere."""

    def checked(box: Sandbox) -> list[str]:
        gpu = Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()
        if gpu and importlib.util.find_spec("numba_cuda") is not None:
            raise SkipCase("a GPU and numba-cuda are here: --crf-device cuda would run")
        return build(box)

    return checked


SETTINGS_CASES = [
    _case("settings/crf-iterations-without-crf", _photos_with("--crf-iterations", "3")),
    _case("settings/crf-gaussian-sxy-without-crf", _photos_with("--crf-gaussian-sxy", "5")),
    _case("settings/trt-fp16-without-tensorrt", _photos_with("--trt-fp16")),
    _case("settings/crf-tune-with-paths", _tune(with_paths=True)),
    _case("settings/crf-tune-with-out", _tune(with_out=True)),
    _case("settings/tune-images-without-crf-tune", _photos_with("--tune-images", "5")),
    _case("settings/device-cuda-unavailable", _photos_with("--device", "cuda")),
    _case("settings/device-tensorrt-unavailable", _photos_with("--device", "tensorrt")),
    _case("settings/eval-without-coco", _photos_with("--eval")),
    _case(
        "settings/data-without-coco", lambda box: infer_args(box, box.photos(), extra=["--data", box.rel(box.coco())])
    ),
    _case(
        "settings/paths-and-coco",
        lambda box: infer_args(box, box.photos(), extra=["--coco", box.rel(box.coco() / "val.json")]),
    ),
    _case("settings/crf-bilateral-srgb-nan", _photos_with("--crf", "--crf-bilateral-srgb", "nan")),
    _case("settings/crf-gaussian-sxy-negative", _photos_with("--crf", "--crf-gaussian-sxy", "-3")),
    _case("settings/crf-bilateral-compat-infinite", _photos_with("--crf", "--crf-bilateral-compat", "inf")),
    _case("settings/submission-without-coco", _photos_with("--submission", "out/sub.csv")),
    _case("settings/tta-scales-not-numbers", _photos_with("--tta-scales", "1,big")),
    _case("settings/tta-with-crf-tune", lambda box: _tune()(box) + ["--tta", "hflip"]),
    _case("settings/crf-device-without-crf", _photos_with("--crf-device", "cpu")),
    _case("settings/crf-device-cuda-unavailable", _without_cuda_crf(_photos_with("--crf", "--crf-device", "cuda"))),
    _case("settings/crf-device-cuda-unavailable-crf-tune",
          _without_cuda_crf(lambda box: _tune()(box) + ["--crf-device", "cuda"])),
    _case("settings/nothing-to-segment", lambda box: ["--model", box.rel(box.model()), "--out", "out/x", "-q"]),
]


# --- command lines that click itself rejects (types, ranges, unknown options) -----------------

USAGE_CASES = [
    _case("usage/infer-unknown-option", _photos_with("--bogus")),
    _case("usage/infer-threads-zero", _photos_with("--threads", "0")),
    _case("usage/infer-device-unknown", _photos_with("--device", "gpu")),
    _case("usage/infer-crf-iterations-negative", _photos_with("--crf", "--crf-iterations", "-1")),
    _case("usage/infer-crf-sxy-not-a-number", _photos_with("--crf", "--crf-gaussian-sxy", "wide")),
    _case("usage/infer-crf-device-unknown", _photos_with("--crf", "--crf-device", "bogus")),
    _case("usage/infer-no-model", lambda box: [box.rel(box.photos()), "--out", "out/labels", "-q"]),
    _case("usage/infer-batch-size-zero", _photos_with("--batch-size", "0")),
    _case("usage/infer-workers-negative", _photos_with("--workers", "-2")),
]


# --- controls: valid runs that must succeed (they check the harness, not tseg) ----------------


def _real_model_coco(box: Sandbox) -> list[str]:
    return coco_args(box, box.coco() / "val.json", model=box.real_model())


CONTROL_CASES = [
    _case("control/infer-folder", lambda box: infer_args(box, box.photos()), expect_ok=True),
    _case("control/infer-coco-eval", lambda box: coco_args(box, box.coco() / "val.json"), expect_ok=True),
    _case("control/infer-real-model-coco-eval", _real_model_coco, expect_ok=True),
]

INFER_CASES = OVERWRITE_CASES + IMAGE_CASES + MODEL_CASES + SETTINGS_CASES + USAGE_CASES + CONTROL_CASES
