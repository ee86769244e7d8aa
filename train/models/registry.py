"""The model registry: names -> keyword-only builders (torchvision's pattern)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from tseg.runtime.errors import TsegError

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Registers a builder under ``name``.

    Raises:
        ValueError: the name is already taken (two families must not shadow each other).
    """

    def decorator(builder: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"a model named {name!r} is already registered")
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models() -> list[str]:
    """Registered model names, sorted."""
    return sorted(_BUILDERS)


def check_model_name(name: str) -> None:
    """Raises TsegError listing the valid names when ``name`` is not registered."""
    if name not in _BUILDERS:
        raise TsegError(f"unknown model {name!r}; valid: {', '.join(list_models())}")


def get_model(name: str, *, num_classes: int, backbone_weights: str | Path | None = None, **kwargs) -> nn.Module:
    """Builds a registered model.

    Args:
        name: a name from :func:`list_models`.
        num_classes: output classes, background included.
        backbone_weights: None (random init), "imagenet" (torchvision's ImageNet
            weights) or a path to a torchvision-style backbone state dict (.pth/.pt).
        **kwargs: family-specific options (e.g. ``aux_loss``).

    Returns:
        A module whose forward maps (N, 3, H, W) to {"out": (N, C, H, W)} (plus
        "aux" when an auxiliary head is on).

    Raises:
        TsegError: unknown name (the valid ones are listed) or bad arguments.
    """
    check_model_name(name)
    if num_classes < 2:
        raise TsegError(f"num_classes must be >= 2, got {num_classes}")
    return _BUILDERS[name](num_classes=num_classes, backbone_weights=backbone_weights, **kwargs)
