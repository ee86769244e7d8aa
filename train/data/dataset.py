"""Torch datasets over :class:`tseg.runtime.data.coco.CocoDataset`.

Images are resized and normalised by the runtime's own functions, so a model
sees the same pixels in training and after export.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.images import normalize, resize_image, resize_labels
from tseg.train.data.cache import DecodedSplit
from tseg.train.data.transforms import AugmentSettings, augment_pair, build_augment, sample_seed


class SegmentationDataset(Dataset):
    """(image, labels) pairs at the training size, plus full-size labels for evaluation.

    Args:
        coco: the split.
        size: training (height, width).
        mean: normalisation mean (RGB, [0, 1] scale).
        std: normalisation std.
        augment: joint image/mask augmentation, or None (validation).
        decoded: the split pre-decoded at ``size`` (``--cache``), or None to decode per item.
        full_labels: also return the label map at the image's own size (validation).
        seed: base of the per-sample augmentation seeds; call :meth:`set_epoch` each epoch.

    Items:
        image (3, h, w) float32, labels (h, w) int64, full-size labels (H, W) int64 or None.
    """

    def __init__(
        self,
        coco: CocoDataset,
        *,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        augment: AugmentSettings | None = None,
        decoded: DecodedSplit | None = None,
        full_labels: bool = False,
        seed: int = 0,
    ) -> None:
        self.coco, self.size, self.decoded = coco, tuple(size), decoded
        self.mean, self.std, self.full_labels, self.seed = tuple(mean), tuple(std), full_labels, seed
        self.augment = build_augment(augment, self.size) if augment and augment.enabled else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch's augmentation stream (as DistributedSampler.set_epoch does)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.coco)

    def _resized(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if self.decoded is not None:
            image, labels = np.asarray(self.decoded.images[index]), np.asarray(self.decoded.labels[index])
            full = self.coco.label_map(index) if self.full_labels else None
            return image, labels, full
        full = self.coco.label_map(index)
        image = resize_image(self.coco.read_image(index), self.size)
        return image, resize_labels(full, self.size), (full if self.full_labels else None)

    def __getitem__(self, index: int):
        image, labels, full = self._resized(index)
        if self.augment is not None:
            chw, mask = augment_pair(
                self.augment,
                torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
                torch.from_numpy(labels.astype(np.int64)),
                seed=sample_seed(self.seed, self.epoch, index),
            )
            image, labels = chw.permute(1, 2, 0).numpy(), mask.numpy()
        tensor = torch.from_numpy(normalize(np.ascontiguousarray(image), mean=self.mean, std=self.std))
        full_tensor = torch.from_numpy(full.astype(np.int64)) if full is not None else None
        return tensor, torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)), full_tensor


def collate_with_full_labels(batch):
    """Stacks images and training-size labels; full-size labels stay a list (sizes may differ)."""
    images, labels, full = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels), list(full)
