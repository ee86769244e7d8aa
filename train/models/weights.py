"""Backbone weights through torchvision's weights API, with a one-line offline error."""

from __future__ import annotations

from pathlib import Path

import torch
from tseg.runtime.errors import TsegError

BACKBONE_WEIGHT_CHOICES = (None, "imagenet")


def imagenet_weights(enum_cls):
    """The ImageNet weights enum entry for a torchvision backbone, checked to be available.

    Args:
        enum_cls: a torchvision ``WeightsEnum`` class (e.g. ``ResNet50_Weights``).

    Returns:
        ``enum_cls.DEFAULT``, once its file is in torch's hub cache or downloadable.

    Raises:
        TsegError: offline and not cached; names the file and the folder to put it in.
    """
    weights = enum_cls.DEFAULT
    file_name = Path(weights.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cached.is_file():
        return weights
    try:
        torch.hub.load_state_dict_from_url(weights.url, progress=True, check_hash=True)
    except Exception as err:  # URLError, SSL errors, hash mismatch ...
        raise TsegError(
            f"cannot get ImageNet weights {file_name} ({type(err).__name__}); download"
            f" {weights.url} and put it in {cached.parent}"
        ) from None
    return weights


def resolve_backbone_weights(backbone_weights: str | None, enum_cls):
    """Maps tseg's ``backbone_weights`` option to a torchvision weights entry or None."""
    if backbone_weights is None:
        return None
    if backbone_weights == "imagenet":
        return imagenet_weights(enum_cls)
    raise TsegError(f"unknown backbone_weights {backbone_weights!r}; valid: {BACKBONE_WEIGHT_CHOICES}")
