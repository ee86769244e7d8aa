"""The model metadata that travels inside every exported ONNX file.

The runtime needs nothing but the ONNX file: class names, palette, input
normalisation and inference size are stored as ONNX ``metadata_props``
(string key/value pairs, JSON-encoded values under a ``tseg.`` prefix).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from tseg.runtime.errors import TsegError

PREFIX = "tseg."
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class ModelMetadata:
    """What the runtime must know about a model besides its graph.

    Attributes:
        classes: class names in label order; label 0 is usually background.
        palette: one (r, g, b) colour per class, for label PNGs.
        mean: per-channel mean on the [0, 1] scale, RGB order.
        std: per-channel standard deviation on the [0, 1] scale.
        input_size: (height, width) the model was trained at; images are
            resized to it before inference.
        model_name: the registry name of the architecture.
        tseg_version: the tseg version that exported the model.
        extra: free-form provenance (training run, metrics), JSON-serialisable.
    """

    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]
    model_name: str
    tseg_version: str
    extra: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise TsegError(f"need at least 2 classes, got {len(self.classes)}")
        if len(self.palette) != len(self.classes):
            raise TsegError(
                f"need one palette colour per class ({len(self.classes)}), got {len(self.palette)}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise TsegError(f"need 3 means and 3 positive stds, got {self.mean} and {self.std}")
        if len(self.input_size) != 2 or min(self.input_size) < 1:
            raise TsegError(f"need input_size (height, width) >= 1, got {self.input_size}")

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
        """Decodes metadata written by :meth:`to_props`.

        Raises:
            TsegError: the properties are missing or malformed, naming ``source``.
        """
        names = [f for f in cls.__dataclass_fields__ if f != "extra"]
        missing = [n for n in names if PREFIX + n not in props]
        if missing:
            raise TsegError(
                f"{source} has no tseg metadata (missing {', '.join(PREFIX + n for n in missing)});"
                " export it with tseg-export"
            )
        try:
            values = {n: json.loads(props[PREFIX + n]) for n in names}
            values["extra"] = json.loads(props.get(PREFIX + "extra", "{}"))
        except json.JSONDecodeError as err:
            raise TsegError(f"{source} has malformed tseg metadata: {err}") from None
        return cls(
            classes=tuple(values["classes"]),
            palette=tuple(tuple(int(c) for c in rgb) for rgb in values["palette"]),
            mean=tuple(float(v) for v in values["mean"]),
            std=tuple(float(v) for v in values["std"]),
            input_size=tuple(int(v) for v in values["input_size"]),
            model_name=str(values["model_name"]),
            tseg_version=str(values["tseg_version"]),
            extra=values["extra"],
        )


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC colour map: background black, then distinct colours.

    Args:
        num_classes: how many colours to return (at most 256).
    """
    if not 1 <= num_classes <= 256:
        raise TsegError(f"need 1 to 256 classes for a palette, got {num_classes}")
    colours = []
    for label in range(num_classes):
        r = g = b = 0
        value = label
        for bit in range(8):
            r |= ((value >> 0) & 1) << (7 - bit)
            g |= ((value >> 1) & 1) << (7 - bit)
            b |= ((value >> 2) & 1) << (7 - bit)
            value >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def as_rgb_triples(palette: Sequence[Sequence[int]]) -> tuple[tuple[int, int, int], ...]:
    """Validates a palette given as a sequence of (r, g, b) in 0..255."""
    triples = tuple(tuple(int(c) for c in rgb) for rgb in palette)
    bad = [rgb for rgb in triples if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb)]
    if bad:
        raise TsegError(f"need palette colours as (r, g, b) in 0..255, got {bad[0]}")
    return triples
