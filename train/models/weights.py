"""Backbone weights: torchvision's ImageNet weights or a .pth file, through one loader.

Every family builds its torchvision classification model (resnet50, vgg16_bn ...),
loads weights into it with :func:`load_backbone_weights`, then wraps it. So
``"imagenet"`` and a path to a torchvision-style state dict take the same road.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tseg.runtime.errors import TsegError
from tseg.runtime.inputs import open_input

BACKBONE_WEIGHT_CHOICES = "None, 'imagenet' or a path to a .pth/.pt state dict"
WEIGHT_FILE_SUFFIXES = (".pth", ".pt")
_SHOWN = 3  # keys named per kind of mismatch in an error line


def imagenet_weights(enum_cls):
    """The ImageNet weights enum entry for a torchvision backbone, its file in torch's hub cache.

    A file not cached yet is downloaded there (a progress bar on stderr when it is a
    terminal); nothing is printed on stdout, which carries only results. (torch's own
    ``load_state_dict_from_url`` writes ``Downloading: ...`` to stdout, so it is not used
    for the download.)

    Args:
        enum_cls: a torchvision ``WeightsEnum`` class (e.g. ``ResNet50_Weights``).

    Returns:
        ``enum_cls.DEFAULT``, once its file is in torch's hub cache.

    Raises:
        TsegError: offline and not cached, or the download does not match its hash; names
            the file and the folder to put it in.
    """
    weights = enum_cls.DEFAULT
    file_name = Path(weights.url).name
    cached = Path(torch.hub.get_dir()) / "checkpoints" / file_name
    if cached.is_file():
        return weights
    try:
        _download(weights.url, cached)
    except Exception as err:  # URLError, SSL errors, hash mismatch, an unwritable cache ...
        raise TsegError(
            f"cannot get ImageNet weights {file_name} ({type(err).__name__}); download"
            f" {weights.url} and put it in {cached.parent}"
        ) from None
    return weights


def _download(url: str, dst: Path) -> None:
    """Downloads ``url`` to ``dst`` (checked against the sha256 prefix in its name, as torch.hub does).

    torch.hub's downloader writes a partial file beside ``dst`` and removes it on failure; the
    folders made for ``dst`` are removed again too when the download fails, so a failed
    command leaves nothing behind.
    """
    made = [folder for folder in (dst.parent, *dst.parent.parents) if not folder.exists()]  # deepest first
    match = torch.hub.HASH_REGEX.search(dst.name)  # torchvision's names carry their sha256's first digits
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(dst), match.group(1) if match else None, progress=sys.stderr.isatty())
    except BaseException:
        for folder in made:
            try:
                folder.rmdir()  # only if still empty
            except OSError:
                break
        raise


def load_weights_only(path: str | Path, *, what: str) -> Any:
    """Reads a PyTorch file safely: ``torch.load(weights_only=True)`` onto the CPU, never pickled code.

    The file is opened with :func:`tseg.runtime.inputs.open_input`, so a FIFO, device or
    folder at ``path`` is refused without blocking on it or reading it without end.

    Args:
        path: the file.
        what: how the user knows it, for errors ("checkpoint", "backbone weights").

    Returns:
        What the file holds (tensors, dicts, lists and primitives only).

    Raises:
        TsegError: missing, not a regular file, unreadable, or not a file torch reads
            with ``weights_only=True``.
    """
    try:
        with open_input(path, what=what) as handle:
            return torch.load(handle, map_location="cpu", weights_only=True)
    except TsegError:
        raise
    except Exception as err:  # UnpicklingError, RuntimeError, zip errors ...
        raise TsegError(f"{what} {path} is not a readable PyTorch file ({type(err).__name__})") from None


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads a state dict (parameter name -> tensor) safely, with ``weights_only=True``.

    Raises:
        TsegError: missing file, not a torch file, or not a flat dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise TsegError(f"backbone weights file not found: {path}")
    state = load_weights_only(path, what="backbone weights")
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        keys = ", ".join(map(repr, list(state)[:_SHOWN])) if isinstance(state, Mapping) else ""
        raise TsegError(
            f"{path} is not a state dict: need a dict of parameter name -> tensor (a torchvision"
            f" model's state_dict()), got {type(state).__name__}" + (f" with keys {keys} ..." if keys else "")
        )
    return dict(state)


def _names(keys: Sequence[str]) -> str:
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def load_fitting_state_dict(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str,
    optional: Sequence[str] = (),
    target: str | None = None,
) -> None:
    """``model.load_state_dict`` with one-line errors that name the keys that do not fit.

    Args:
        model: the torchvision classification model (e.g. ``resnet50()``).
        state: the weights to load.
        source: where they came from, for messages.
        optional: key prefixes the file may lack (heads the segmentation model drops, e.g. "fc.").
        target: names the model in messages (default: "the <class name> backbone").

    Raises:
        TsegError: missing (non-optional) or unexpected keys, or tensors of another shape.
    """
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.startswith(tuple(optional))]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    problems = [
        f"{label} {len(keys)} ({_names(keys)})"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes))
        if keys
    ]
    if problems:
        target = target or f"the {type(model).__name__} backbone"
        raise TsegError(f"{source} does not fit {target}: {'; '.join(problems)}")
    model.load_state_dict(state, strict=False)


def load_backbone_weights(
    model: nn.Module, backbone_weights: str | Path | None, enum_cls, *, optional: Sequence[str] = ()
) -> nn.Module:
    """Loads ImageNet or file weights into a torchvision classification model, in place.

    Args:
        model: a freshly built torchvision model (``resnet50()``, ``vgg16_bn()`` ...).
        backbone_weights: None (keep the random init), "imagenet" (torchvision's
            ``enum_cls.DEFAULT`` through its weights API) or a path to a .pth/.pt state dict.
        enum_cls: the model's torchvision ``WeightsEnum`` class.
        optional: key prefixes a file may lack (the classifier head the wrapper drops).

    Returns:
        ``model``, weights loaded.

    Raises:
        TsegError: an unknown option, ImageNet weights unavailable offline, a missing or
            unreadable file, or keys that do not fit (a few are named).
    """
    if backbone_weights is None:
        return model
    if backbone_weights == "imagenet":
        weights = imagenet_weights(enum_cls)
        state, source = weights.get_state_dict(progress=True, check_hash=True), str(weights)
    elif Path(backbone_weights).suffix in WEIGHT_FILE_SUFFIXES:
        state, source = read_state_dict(backbone_weights), str(backbone_weights)
    else:
        raise TsegError(f"unknown backbone_weights {str(backbone_weights)!r}; valid: {BACKBONE_WEIGHT_CHOICES}")
    load_fitting_state_dict(model, state, source=source, optional=optional)
    return model
