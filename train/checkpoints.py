"""Checkpoints that hold everything export needs, written atomically.

A checkpoint is a plain dict of tensors and primitives, so it loads with
``torch.load(..., weights_only=True)`` and never runs pickled code.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write
from tseg.runtime.model.metadata import MAX_CLASSES
from tseg.train.models import get_model, list_models
from tseg.train.models.weights import load_fitting_state_dict, load_weights_only
from tseg.train.settings import MAX_SIZE

FORMAT = "tseg-checkpoint"
FORMAT_VERSION = 1


SPEC_KEYS = ("name", "kwargs", "classes", "palette", "mean", "std", "input_size")


@dataclass(frozen=True)
class ModelSpec:
    """What rebuilds a trained model and feeds its export.

    Attributes:
        name: registry name. kwargs: builder options (num_classes included).
        classes: class names in label order. palette: (r, g, b) per class.
        mean, std: input normalisation. input_size: training (height, width).
    """

    name: str
    kwargs: dict[str, Any]
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    input_size: tuple[int, int]

    def build(self, *, source: str = "checkpoint") -> nn.Module:
        """A fresh, randomly initialised model of this spec (no weight downloads).

        Raises:
            TsegError: the builder refuses the kwargs (unknown option, wrong type), naming ``source``.
        """
        kwargs = {k: v for k, v in self.kwargs.items() if k != "backbone_weights"}
        try:
            return get_model(self.name, **kwargs)
        except Exception as err:  # any refusal of the stored kwargs is the file's fault, not a bug
            detail = str(err).splitlines()[0] if str(err) else type(err).__name__
            raise TsegError(f"{source}: model {self.name!r} cannot be built with kwargs {kwargs}: {detail}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kwargs": dict(self.kwargs),
            "classes": list(self.classes),
            "palette": [list(c) for c in self.palette],
            "mean": list(self.mean),
            "std": list(self.std),
            "input_size": list(self.input_size),
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "checkpoint") -> ModelSpec:
        """The spec saved under a checkpoint's "model" key, every field checked.

        Raises:
            TsegError: a missing field or one of the wrong type or range, naming ``source``.
        """
        check_spec_dict(data, source=source)
        return cls(
            name=data["name"],
            kwargs=dict(data["kwargs"]),
            classes=tuple(data["classes"]),
            palette=tuple(tuple(int(v) for v in c) for c in data["palette"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
            input_size=tuple(int(v) for v in data["input_size"]),
        )


def _numbers(value: Any, count: int, *, integer: bool) -> bool:
    """``value`` is a list/tuple of ``count`` finite numbers (integers if asked; bools never)."""
    kind = numbers.Integral if integer else numbers.Real
    return (
        isinstance(value, (list, tuple))
        and len(value) == count
        and all(isinstance(v, kind) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def check_spec_dict(data: Any, *, source: str) -> None:
    """Validates a checkpoint's "model" dict (see :class:`ModelSpec`).

    Raises:
        TsegError: naming ``source`` and the field that is missing or wrong.
    """
    if not isinstance(data, dict):
        raise TsegError(f"{source}: 'model' must be a dict with {', '.join(SPEC_KEYS)}; got {type(data).__name__}")
    missing = [k for k in SPEC_KEYS if k not in data]
    if missing:
        raise TsegError(f"{source}: the model spec lacks {', '.join(missing)} (need {', '.join(SPEC_KEYS)})")
    name, kwargs, classes, palette = data["name"], data["kwargs"], data["classes"], data["palette"]
    if not isinstance(name, str) or name not in list_models():
        raise TsegError(f"{source}: unknown model {name!r}; valid: {', '.join(list_models())}")
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise TsegError(f"{source}: model kwargs must be a dict of option name -> value, got {kwargs!r}")
    if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) and c for c in classes):
        raise TsegError(f"{source}: classes must be a list of non-empty names, got {classes!r}")
    if not 2 <= len(classes) <= MAX_CLASSES or len(set(classes)) != len(classes):
        raise TsegError(f"{source}: need 2 to {MAX_CLASSES} distinct class names, got {len(classes)}: {classes!r}")
    num_classes = kwargs.get("num_classes")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes != len(classes):
        raise TsegError(
            f"{source}: kwargs num_classes={num_classes!r} does not match its {len(classes)} class names"
        )
    if not isinstance(palette, (list, tuple)) or len(palette) != len(classes):
        count = len(palette) if isinstance(palette, (list, tuple)) else type(palette).__name__
        raise TsegError(f"{source}: need one palette colour per class ({len(classes)}), got {count}")
    if not all(_numbers(c, 3, integer=True) and all(0 <= v <= 255 for v in c) for c in palette):
        raise TsegError(f"{source}: palette colours must be (r, g, b) integers 0..255, got {palette!r}")
    if not _numbers(data["mean"], 3, integer=False):
        raise TsegError(f"{source}: mean must be 3 finite numbers, got {data['mean']!r}")
    if not _numbers(data["std"], 3, integer=False) or min(data["std"]) <= 0:
        raise TsegError(f"{source}: std must be 3 finite numbers > 0, got {data['std']!r}")
    size = data["input_size"]
    if not _numbers(size, 2, integer=True) or not all(1 <= v <= MAX_SIZE for v in size):
        raise TsegError(f"{source}: input_size must be (height, width) in 1..{MAX_SIZE}, got {size!r}")


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace: no torn files.

    torch.save writes through a Python file object, so a full disk raises OSError(ENOSPC)
    (which atomic_write turns into one line); given a path, its C++ writer raises an
    opaque RuntimeError instead.
    """

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle)

    atomic_write(path, write)


def save_checkpoint(
    path: str | Path,
    *,
    spec: ModelSpec,
    model: nn.Module,
    epoch: int,
    metrics: dict[str, float],
    settings: dict[str, Any],
    tseg_version: str,
    extra: dict[str, Any] | None = None,
) -> None:
    """Writes a checkpoint atomically.

    Args:
        path: destination (.pt).
        spec: how to rebuild the model.
        model: its weights are saved (unwrapped from DDP if needed).
        epoch: epochs completed.
        metrics: the epoch's metrics (e.g. val_miou).
        settings: the resolved run settings, primitives only.
        tseg_version: version that wrote it.
        extra: further state (optimizer, RNG) for resuming.
    """
    module = model.module if hasattr(model, "module") else model
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tseg_version": tseg_version,
        "model": spec.to_dict(),
        "state_dict": module.state_dict(),
        "epoch": epoch,
        "metrics": dict(metrics),
        "settings": settings,
    }
    payload.update(extra or {})
    atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Loads a tseg checkpoint safely (:func:`~tseg.train.models.weights.load_weights_only`).

    Raises:
        TsegError: missing file, not a torch file, or not written by tseg.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise TsegError(f"checkpoint not found: {path}")
    payload = load_weights_only(path, what="checkpoint")  # a FIFO or device is refused, never waited on
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TsegError(
            f"{path} is not a tseg checkpoint (need a file written by tseg-train, with format={FORMAT!r})"
        )
    version = payload.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise TsegError(f"{path} has a malformed format_version {version!r} (need an integer >= 1)")
    if version > FORMAT_VERSION:
        raise TsegError(
            f"{path} has checkpoint format {payload['format_version']}; this tseg reads up to"
            f" {FORMAT_VERSION}: upgrade tseg"
        )
    return payload


def model_from_checkpoint(payload: dict[str, Any], *, source: str = "checkpoint") -> tuple[nn.Module, ModelSpec]:
    """Rebuilds the model of a loaded checkpoint, weights restored, in eval mode.

    Args:
        payload: what :func:`load_checkpoint` returned.
        source: names the file in errors.

    Raises:
        TsegError: a missing or malformed spec or state_dict, kwargs the builder refuses,
            weights that do not fit the model (keys, shapes: a class-count mismatch shows
            in the last layer) or that are not finite.
    """
    for key in ("model", "state_dict"):
        if key not in payload:
            raise TsegError(f"{source} has no {key!r} entry (a checkpoint written by tseg-train has one)")
    spec = ModelSpec.from_dict(payload["model"], source=source)
    state = payload["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise TsegError(f"{source}: state_dict must map parameter names to tensors, got {type(state).__name__}")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise TsegError(f"{source}: weights hold NaN or infinity ({', '.join(bad[:3])}); the training diverged")
    model = spec.build(source=source)
    target = f"{spec.name} with {len(spec.classes)} classes"
    load_fitting_state_dict(model, state, source=f"{source}'s state_dict", target=target)
    return model.eval(), spec
