"""Calibration images for INT8: real images of a split, preprocessed exactly as the runtime does."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.images import preprocess


def calibration_indices(total: int, *, count: int, seed: int = 0) -> list[int]:
    """``min(count, total)`` distinct indices spread evenly over ``range(total)``.

    One index per equal stride, at the same seeded offset inside each stride, so the
    choice is deterministic and covers the whole split (COCO files are often ordered
    by source or scene).
    """
    take = min(count, total)
    if take == 0:
        return []
    stride = total / take
    offset = float(np.random.default_rng(seed).random())
    return [min(total - 1, int((i + offset) * stride)) for i in range(take)]


def calibration_images(
    coco: CocoDataset,
    *,
    count: int,
    size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    seed: int = 0,
) -> Iterator[np.ndarray]:
    """Up to ``count`` images of ``coco``, spread over it, read one at a time.

    Args:
        coco: the split to calibrate on (the training split).
        count: how many images at most (the split may hold fewer).
        size: the model's input (height, width).
        mean, std: the model's normalisation on the [0, 1] scale.
        seed: picks the offset of the evenly spaced choice.

    Returns:
        An iterator of (3, height, width) float32 images, as
        :func:`tseg.runtime.images.preprocess` gives them to the model.

    Raises:
        TsegError: ``count`` is not a positive integer, or the split has no images.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise TsegError(f"calibration images: need a positive integer count, got {count!r}")
    if len(coco) == 0:
        raise TsegError(f"calibration images: {coco.json_path} lists no images; need at least 1")
    indices = calibration_indices(len(coco), count=count, seed=seed)
    return (preprocess(coco.read_image(i), size=size, mean=mean, std=std) for i in indices)
