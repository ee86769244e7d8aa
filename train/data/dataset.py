"""Torch datasets over :class:`tseg.runtime.coco.CocoDataset`.

Images are resized and normalised by the runtime's own functions, so a model
sees the same pixels in training and after export.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tseg.runtime.coco import CocoDataset
from tseg.runtime.images import normalize, resize_image, resize_labels


class _DecodedCache:
    """Keeps each image and label map after its first decode (``cache=True``)."""

    def __init__(self, coco: CocoDataset, size: Sequence[int], enabled: bool) -> None:
        self.coco, self.size, self.enabled = coco, tuple(size), enabled
        self._items: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def get(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(resized image, resized labels, full-size labels)."""
        if index in self._items:
            return self._items[index]
        labels = self.coco.label_map(index)
        item = (
            resize_image(self.coco.read_image(index), self.size),
            resize_labels(labels, self.size),
            labels,
        )
        if self.enabled:
            self._items[index] = item
        return item


class SegmentationDataset(Dataset):
    """(image, labels) pairs at the training size, plus full-size labels for evaluation.

    Args:
        coco: the split.
        size: training (height, width).
        mean: normalisation mean (RGB, [0, 1] scale).
        std: normalisation std.
        hflip: randomly mirror image and labels (training only).
        cache: keep decoded, resized samples in memory after the first epoch.

    Items:
        image (3, h, w) float32, labels (h, w) int64, full-size labels (H, W) int64.
    """

    def __init__(
        self,
        coco: CocoDataset,
        *,
        size: Sequence[int],
        mean: Sequence[float],
        std: Sequence[float],
        hflip: bool = False,
        cache: bool = False,
    ) -> None:
        self.coco = coco
        self.mean, self.std, self.hflip = tuple(mean), tuple(std), hflip
        self._cache = _DecodedCache(coco, size, cache)

    def __len__(self) -> int:
        return len(self.coco)

    def __getitem__(self, index: int):
        image, labels, full_labels = self._cache.get(index)
        if self.hflip and torch.rand(()) < 0.5:
            image, labels = image[:, ::-1], labels[:, ::-1]
        tensor = torch.from_numpy(normalize(np.ascontiguousarray(image), mean=self.mean, std=self.std))
        return (
            tensor,
            torch.from_numpy(np.ascontiguousarray(labels).astype(np.int64)),
            torch.from_numpy(full_labels.astype(np.int64)),
        )


def collate_with_full_labels(batch):
    """Stacks images and training-size labels; full-size labels stay a list (sizes may differ)."""
    images, labels, full = zip(*batch, strict=True)
    return torch.stack(images), torch.stack(labels), list(full)
