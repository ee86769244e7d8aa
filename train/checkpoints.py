"""Checkpoints that hold everything export needs, written atomically.

A checkpoint is a plain dict of tensors and primitives, so it loads with
``torch.load(..., weights_only=True)`` and never runs pickled code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tseg.runtime.errors import TsegError
from tseg.runtime.files import atomic_write
from tseg.train.models import get_model

FORMAT = "tseg-checkpoint"
FORMAT_VERSION = 1


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

    def build(self) -> nn.Module:
        """A fresh, randomly initialised model of this spec (no weight downloads)."""
        kwargs = {k: v for k, v in self.kwargs.items() if k != "backbone_weights"}
        return get_model(self.name, **kwargs)

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
    def from_dict(cls, data: dict[str, Any]) -> ModelSpec:
        return cls(
            name=data["name"],
            kwargs=dict(data["kwargs"]),
            classes=tuple(data["classes"]),
            palette=tuple(tuple(c) for c in data["palette"]),
            mean=tuple(data["mean"]),
            std=tuple(data["std"]),
            input_size=tuple(data["input_size"]),
        )


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """torch.save to a temp file in the same folder, then os.replace: no torn files."""
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


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
    """Loads a tseg checkpoint safely (``weights_only=True``).

    Raises:
        TsegError: missing file, not a torch file, or not written by tseg.
    """
    path = Path(path)
    if not path.is_file():
        raise TsegError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError, zip errors ...
        raise TsegError(f"{path} is not a readable PyTorch checkpoint ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TsegError(
            f"{path} is not a tseg checkpoint (need a file written by tseg-train, with format={FORMAT!r})"
        )
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise TsegError(
            f"{path} has checkpoint format {payload['format_version']}; this tseg reads up to"
            f" {FORMAT_VERSION}: upgrade tseg"
        )
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[nn.Module, ModelSpec]:
    """Rebuilds the model of a loaded checkpoint, weights restored, in eval mode."""
    spec = ModelSpec.from_dict(payload["model"])
    model = spec.build()
    model.load_state_dict(payload["state_dict"])
    return model.eval(), spec
