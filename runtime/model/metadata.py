"""The model metadata that travels inside every exported ONNX file.

The runtime needs nothing but the ONNX file: class names, palette, input
normalisation and inference size are stored as ONNX ``metadata_props``
(string key/value pairs, JSON-encoded values under a ``tseg.`` prefix).
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from tseg.runtime.errors import TsegError
from tseg.runtime.palette import MAX_COLOURS, distinct_palette

PREFIX = "tseg."
SCHEMA_VERSION = 1
# Classes a tseg model may have, background included, from training to the runtime: label maps are
# 8-bit (palette PNGs, uint8 arrays) and label 255 stays free for training's --ignore-index.
MAX_CLASSES = 255
MAX_INPUT_SIDE = 8192
MAX_BATCH_SIZE = 1024  # images per model run: tseg-infer --batch-size, TensorRT's largest profile
MAX_NAME_CHARS = 200
# Normalisation is on the [0, 1] pixel scale; beyond these the float32 input is garbage.
MEAN_RANGE = (-1000.0, 1000.0)
STD_RANGE = (1e-6, 1000.0)
PRECISIONS = ("fp32", "fp16", "int8")
_OPTIONAL = {"extra": "{}", "precision": '"fp32"', "calibration": "{}"}  # field -> JSON when absent


def _show(value: object) -> str:
    """A short repr for error messages (metadata may hold anything)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _sequence(key: str, value: object, need: str) -> Sequence:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise TsegError(f"{key}: need {need}, got {_show(value)}")
    return value


def _check_classes(value: object) -> tuple[str, ...]:
    need = f"a list of 2 to {MAX_CLASSES} unique, non-empty class names"
    names = _sequence("classes", value, need)
    if not 2 <= len(names) <= MAX_CLASSES:
        raise TsegError(f"classes: need {need}, got {len(names)} name(s)")
    for name in names:
        if not _is_text(name) or not name.strip():
            raise TsegError(
                f"classes: need {need} (printable, at most {MAX_NAME_CHARS} characters), got {_show(name)}"
            )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise TsegError(f"classes: need {need}, got {_show(duplicates[0])} more than once")
    return tuple(names)


def _check_palette(value: object, num_classes: int) -> tuple[tuple[int, int, int], ...]:
    need = f"one palette colour per class ({num_classes}), each [r, g, b] with integers 0..255"
    colours = _sequence("palette", value, need)
    if len(colours) != num_classes:
        raise TsegError(f"palette: need {need}, got {len(colours)} colour(s)")
    for rgb in colours:
        if (
            isinstance(rgb, (str, bytes))
            or not isinstance(rgb, Sequence)
            or len(rgb) != 3
            or not all(_is_int(c) and 0 <= c <= 255 for c in rgb)
        ):
            raise TsegError(f"palette: need {need}, got {_show(rgb)}")
    return tuple((int(r), int(g), int(b)) for r, g, b in colours)


def _check_reals(key: str, value: object, low: float, high: float) -> tuple[float, float, float]:
    need = f"3 finite numbers in [{low:g}, {high:g}] (R, G, B on the [0, 1] pixel scale)"
    values = _sequence(key, value, need)
    # Compare before any float(): an int of 400 digits would overflow.
    if len(values) != 3 or not all(_is_real(v) and low <= v <= high for v in values):
        raise TsegError(f"{key}: need {need}, got {_show(value)}")
    return tuple(float(v) for v in values)  # type: ignore[return-value]


def _check_input_size(value: object) -> tuple[int, int]:
    need = f"[height, width] as integers in 1..{MAX_INPUT_SIDE}"
    size = _sequence("input_size", value, need)
    if len(size) != 2 or not all(_is_int(v) and 1 <= v <= MAX_INPUT_SIDE for v in size):
        raise TsegError(f"input_size: need {need}, got {_show(value)}")
    return int(size[0]), int(size[1])


def _is_text(value: object) -> bool:
    """A short printable string: names end up in one-line messages and reports."""
    return isinstance(value, str) and len(value) <= MAX_NAME_CHARS and value.isprintable()


def _check_text(key: str, value: object) -> str:
    if not _is_text(value):
        raise TsegError(
            f"{key}: need a printable string of at most {MAX_NAME_CHARS} characters, got {_show(value)}"
        )
    return value


def _check_schema(text: str) -> int:
    version = text.strip()
    if not version.isascii() or not version.isdigit() or len(version) > 6 or int(version) < 1:
        raise TsegError(f"schema: need a version number 1..{SCHEMA_VERSION}, got {_show(text)}")
    if int(version) > SCHEMA_VERSION:
        raise TsegError(
            f"schema: the model was written with tseg metadata version {int(version)}, this tseg reads up to"
            f" {SCHEMA_VERSION}; upgrade tseg (pip install -U tseg)"
        )
    return int(version)


def _decode(key: str, text: object) -> object:
    """One JSON-encoded property; anything Python's parser cannot take is a TsegError."""
    if not isinstance(text, str):
        raise TsegError(f"{key}: need a JSON string, got {_show(text)}")
    try:
        return json.loads(text)
    except RecursionError:
        raise TsegError(f"{key}: JSON nested too deeply") from None
    except ValueError as err:  # JSONDecodeError, and integers too long to convert
        raise TsegError(f"{key}: malformed JSON ({str(err)[:120]})") from None


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime must know about a model besides its graph.

    Every field is checked (types and ranges) on construction, so a model whose
    metadata was edited by hand is refused with one line instead of failing later.

    Attributes:
        classes: 2 to 256 unique class names in label order; label 0 is usually background.
        palette: one (r, g, b) colour per class, integers 0..255, for label PNGs.
        mean: per-channel mean on the [0, 1] scale, RGB order (finite).
        std: per-channel standard deviation on the [0, 1] scale (finite, > 0).
        input_size: (height, width) the model was trained at, each 1..8192; images
            are resized to it before inference.
        model_name: the registry name of the architecture.
        tseg_version: the tseg version that exported the model.
        extra: free-form provenance (training run, metrics), JSON-serialisable.
        precision: the numeric precision of the graph's weights and compute, one of
            :data:`PRECISIONS` (inputs and outputs are float32 in all of them).
        calibration: for ``int8``, how the activation ranges were calibrated (images,
            method, source split); empty otherwise.
    """

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    model_name: str
    tseg_version: str
    extra: Mapping[str, object] = field(default_factory=dict)
    precision: str = "fp32"
    calibration: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        classes = _check_classes(self.classes)
        checked = {
            "classes": classes,
            "palette": _check_palette(self.palette, len(classes)),
            "mean": _check_reals("mean", self.mean, *MEAN_RANGE),
            "std": _check_reals("std", self.std, *STD_RANGE),
            "input_size": _check_input_size(self.input_size),
            "model_name": _check_text("model_name", self.model_name),
            "tseg_version": _check_text("tseg_version", self.tseg_version),
        }
        for name in ("extra", "calibration"):
            if not isinstance(getattr(self, name), Mapping):
                raise TsegError(f"{name}: need a JSON object, got {_show(getattr(self, name))}")
        if self.precision not in PRECISIONS:
            raise TsegError(f"precision: need one of {', '.join(PRECISIONS)}, got {_show(self.precision)}")
        for name, value in checked.items():  # normalised: tuples of Python ints and floats
            object.__setattr__(self, name, value)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_props(self) -> dict[str, str]:
        """Encodes the metadata as ONNX ``metadata_props`` (str -> str)."""
        props = {PREFIX + key: json.dumps(value) for key, value in asdict(self).items()}
        props[PREFIX + "schema"] = str(SCHEMA_VERSION)
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], *, source: str = "model") -> ModelMetadata:
        """Decodes and checks metadata written by :meth:`to_props`.

        Raises:
            TsegError: the properties are missing or malformed: one line naming
                ``source``, the key, what was expected and what came.
        """
        names = [f for f in cls.__dataclass_fields__ if f not in _OPTIONAL]
        missing = [n for n in [*names, "schema"] if PREFIX + n not in props]
        if missing:
            raise TsegError(
                f"{source} has no tseg metadata (missing {', '.join(PREFIX + n for n in missing)});"
                " export it with tseg-export"
            )
        try:
            _check_schema(str(props[PREFIX + "schema"]))
            values = {n: _decode(n, props[PREFIX + n]) for n in names}
            for name, default in _OPTIONAL.items():  # absent from files of older tseg versions
                values[name] = _decode(name, props.get(PREFIX + name, default))
            return cls(**values)
        except TsegError as err:
            raise TsegError(f"{source}: bad tseg metadata {PREFIX}{err}") from None


def metadata_props(proto) -> dict[str, str]:
    """An ONNX ``ModelProto``'s metadata_props as a dict (what :meth:`ModelMetadata.from_props` reads)."""
    return {entry.key: entry.value for entry in proto.metadata_props}


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """Colours for a new model's classes: background black, then colours that stay distinct blended
    50% over a photo (:func:`tseg.runtime.palette.distinct_palette`; earlier versions gave the PASCAL VOC
    map, and a model keeps the palette it was exported with).

    Args:
        num_classes: how many colours to return (at most 256).
    """
    integral = isinstance(num_classes, numbers.Integral) and not isinstance(num_classes, bool)
    if not integral or not 1 <= num_classes <= MAX_COLOURS:
        raise TsegError(f"need 1 to 256 classes for a palette, got {num_classes}")
    return distinct_palette(int(num_classes))


def as_rgb_triples(palette: Sequence[Sequence[int]]) -> tuple[tuple[int, int, int], ...]:
    """Validates a palette given as a sequence of (r, g, b) integers in 0..255."""
    colours = _sequence("palette", palette, "a list of [r, g, b] colours")
    return _check_palette(colours, len(colours))
