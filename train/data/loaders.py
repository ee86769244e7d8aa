"""Datasets and loaders of a run: augmentation, the decoded cache, DDP sharding."""

from __future__ import annotations

import numpy as np
from torch.utils.data import DataLoader, DistributedSampler, Subset

from tseg.runtime.data.coco import CocoDataset
from tseg.train.data.cache import decoded_split
from tseg.train.data.dataset import SegmentationDataset, collate_with_full_labels
from tseg.train.data.transforms import AugmentSettings
from tseg.train.distributed import DistContext
from tseg.train.settings import IMAGENET_MEAN, IMAGENET_STD, TrainSettings


def build_datasets(settings: TrainSettings, train: CocoDataset, val: CocoDataset):
    """(training set with augmentation, validation set with full-size labels)."""
    size = (settings.size, settings.size)
    common = dict(size=size, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    cache = settings.cache
    augment = AugmentSettings(
        hflip=settings.hflip,
        scale_range=settings.scale_range,
        color_jitter=settings.color_jitter,
        ignore_index=settings.ignore_index,
    )
    train_set = SegmentationDataset(
        train,
        augment=augment,
        seed=settings.seed,
        **common,
        decoded=decoded_split(train, size=size, progress=settings.progress) if cache else None,
    )
    val_set = SegmentationDataset(
        val,
        full_labels=True,
        **common,
        decoded=decoded_split(val, size=size, progress=settings.progress) if cache else None,
    )
    return train_set, val_set


def build_loaders(settings: TrainSettings, train_set, val_set, ctx: DistContext):
    """(train sampler, train loader, val loader); the global batch is split over processes."""
    # One sampler for one process and for DDP: the shuffle is a function of (seed, epoch),
    # so a resumed run sees the same batches.
    sampler = DistributedSampler(
        train_set,
        num_replicas=ctx.world_size,
        rank=ctx.rank,
        shuffle=True,
        seed=settings.seed,
        drop_last=False,
    )
    per_process = settings.batch_size // ctx.world_size
    train_loader = DataLoader(
        train_set,
        batch_size=per_process,
        sampler=sampler,
        num_workers=settings.workers,
        drop_last=len(sampler) > per_process,
        collate_fn=collate_with_full_labels,
        pin_memory=ctx.device.type == "cuda",
    )
    val_shard = Subset(val_set, list(range(ctx.rank, len(val_set), ctx.world_size)))  # no padding
    val_loader = DataLoader(
        val_shard, batch_size=per_process, num_workers=settings.workers, collate_fn=collate_with_full_labels
    )
    return sampler, train_loader, val_loader


def label_counts(dataset: SegmentationDataset, num_classes: int):
    """A callable counting pixels per class over the split (for balanced class weights)."""

    def count() -> np.ndarray:
        total = np.zeros(num_classes, dtype=np.int64)
        for i in range(len(dataset.coco)):
            labels = dataset.decoded.labels[i] if dataset.decoded is not None else dataset.coco.label_map(i)
            total += np.bincount(np.asarray(labels).ravel(), minlength=256)[:num_classes]
        return total

    return count
