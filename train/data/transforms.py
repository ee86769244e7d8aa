"""Joint image + mask augmentation with torchvision.transforms.v2.

Each sample draws its randomness from a generator seeded by (seed, epoch, index),
so an epoch's augmentations do not depend on worker count or on what ran
before: a resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IGNORE_INDEX = 255  # default label of pixels padded in by crops; excluded from loss and metrics


@dataclass(frozen=True)
class AugmentSettings:
    """Which augmentations run (each can be switched off).

    Attributes:
        hflip: random horizontal flip.
        scale_range: (min, max) random rescale before a random crop back to the
            training size; None disables it.
        color_jitter: brightness/contrast/saturation strength (hue a tenth of
            it); 0 disables it.
        ignore_index: the label that fills mask pixels padded in by the crop (the
            run's ``--ignore-index``, so the loss and metrics skip them).
    """

    hflip: bool = True
    scale_range: tuple[float, float] | None = (0.5, 2.0)
    color_jitter: float = 0.2
    ignore_index: int = IGNORE_INDEX

    @property
    def enabled(self) -> bool:
        return self.hflip or self.scale_range is not None or self.color_jitter > 0


def build_augment(settings: AugmentSettings, size: tuple[int, int]) -> v2.Compose:
    """The v2 pipeline on (uint8 Image (3, h, w), Mask (h, w)) at the training ``size``."""
    steps: list = []
    if settings.scale_range is not None:
        low, high = settings.scale_range
        steps += [
            v2.ScaleJitter(target_size=size, scale_range=(low, high), antialias=True),
            v2.RandomCrop(
                size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: settings.ignore_index}
            ),
        ]
    if settings.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if settings.color_jitter > 0:
        j = settings.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j, hue=min(j / 10, 0.5)))
    return v2.Compose(steps)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A distinct, reproducible seed per (run seed, epoch, sample), within torch.manual_seed's range."""
    return ((seed * 1_000_003 + epoch) * 1_000_033 + index) % 2**64


def augment_pair(
    augment: v2.Compose, image: torch.Tensor, labels: torch.Tensor, *, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Applies ``augment`` to (3, h, w) uint8 and (h, w) labels with its own RNG stream."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        out_image, out_labels = augment(tv_tensors.Image(image), tv_tensors.Mask(labels))
    return out_image.as_subclass(torch.Tensor), out_labels.as_subclass(torch.Tensor)
