"""One epoch of training, and evaluation at the dataset's own image size."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from tseg.runtime.errors import TsegError
from tseg.runtime.labels import labels_from_scores
from tseg.runtime.metrics import ConfusionMatrix, SegmentationScores

AUX_WEIGHT = 0.5  # torchvision's reference weight for the auxiliary head


def segmentation_loss(outputs: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on "out", plus AUX_WEIGHT times that of "aux" when present.

    Args:
        outputs: {"out": (N, C, H, W)[, "aux": (N, C, H, W)]}.
        labels: (N, H, W) int64.
    """
    loss = F.cross_entropy(outputs["out"], labels)
    if "aux" in outputs:
        loss = loss + AUX_WEIGHT * F.cross_entropy(outputs["aux"], labels)
    return loss


def train_one_epoch(
    model: nn.Module,
    loader,
    optimizer: torch.optim.Optimizer,
    *,
    device: torch.device,
    epoch: int,
    progress: bool = True,
) -> float:
    """Trains for one pass over ``loader``; returns the mean loss per image.

    Raises:
        TsegError: the loss became NaN or infinite (learning rate too high?).
    """
    model.train()
    total, count = 0.0, 0
    bar = tqdm(loader, desc=f"epoch {epoch} train", unit="batch", disable=not progress, leave=False)
    for images, labels, _ in bar:
        images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        loss = segmentation_loss(model(images), labels)
        if not math.isfinite(loss.item()):
            raise TsegError(f"training diverged at epoch {epoch}: loss is {loss.item()}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * images.shape[0]
        count += images.shape[0]
        bar.set_postfix(loss=f"{total / count:.4f}")
    return total / max(count, 1)


@torch.no_grad()
def evaluate(
    model: nn.Module, loader, *, num_classes: int, device: torch.device, progress: bool = True
) -> tuple[float, SegmentationScores]:
    """Validation loss at the training size and scores at each image's own size.

    The logits are upsampled to the full label map by the runtime's function,
    so these scores are what ``tseg-infer --eval`` reports for the exported model.

    Returns:
        (mean loss per image, dataset-level scores).
    """
    model.eval()
    confusion = ConfusionMatrix(num_classes)
    total, count = 0.0, 0
    for images, labels, full_labels in tqdm(
        loader, desc="val", unit="batch", disable=not progress, leave=False
    ):
        images = images.to(device).contiguous(memory_format=torch.channels_last)
        outputs = model(images)
        total += (
            F.cross_entropy(outputs["out"], labels.to(device), reduction="sum").item() / labels[0].numel()
        )
        count += images.shape[0]
        logits = outputs["out"].float().cpu().numpy()
        for scores, truth in zip(logits, full_labels, strict=True):
            confusion.update(truth.numpy(), labels_from_scores(scores, truth.shape))
    return total / max(count, 1), confusion.compute()
