"""tseg-train's loop against a bare PyTorch loop, and the decoded cache against JPEG decoding.

Both comparisons run side by side in one process, interleaved, medians reported,
since this machine is shared and noisy. Usage:

    python benchmarks/train.py [--model NAME] [--size 256] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import statistics
import time

import click
import torch
import torch.nn.functional as F

from tseg.runtime.data.coco import CocoDataset
from tseg.train.data.cache import decoded_split
from tseg.train.data.dataset import SegmentationDataset, collate_with_full_labels
from tseg.train.data.synthetic import ensure_synthetic_dataset
from tseg.train.distributed import DistContext
from tseg.train.engine import LossSpec, Precision, train_one_epoch
from tseg.train.models import get_model
from tseg.train.schedules import LrSchedule
from tseg.train.settings import IMAGENET_MEAN, IMAGENET_STD


def _batches(dataset, batch_size):
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=collate_with_full_labels)
    return [(x, y, f) for x, y, f in loader]


def bare_loop(model, optimizer, batches) -> float:
    """The minimal loop: forward, cross-entropy, backward, step. Returns images/s."""
    model.train()
    start, count = time.perf_counter(), 0
    for images, labels, _ in batches:
        images = images.contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(images)["out"], labels, ignore_index=255)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        count += len(images)
    return count / (time.perf_counter() - start)


def tseg_loop(model, optimizer, batches, num_classes) -> float:
    """tseg's train_one_epoch (per-step LR, train mIoU, NaN check) on the same batches."""
    schedule = LrSchedule(name="constant", peak_lr=1e-3, total_steps=10**6)
    ctx = DistContext(rank=0, world_size=1, device=torch.device("cpu"))
    start = time.perf_counter()
    train_one_epoch(
        model,
        batches,
        optimizer,
        schedule=schedule,
        step=0,
        loss_spec=LossSpec(),
        precision=Precision(amp=False, channels_last=True),
        accumulate=1,
        num_classes=num_classes,
        ctx=ctx,
        epoch=1,
        on_step=lambda s, lr: None,
        progress=False,
    )
    return sum(len(b[0]) for b in batches) / (time.perf_counter() - start)


def loader_throughput(dataset, batch_size) -> float:
    """Images/s of one pass of the DataLoader alone (decode, resize, normalise, collate)."""
    start = time.perf_counter()
    count = sum(len(b[0]) for b in _batches(dataset, batch_size))
    return count / (time.perf_counter() - start)


@click.command()
@click.option("--model", "model_name", default="deeplabv3_mobilenet_v3_large", show_default=True)
@click.option("--size", default=256, show_default=True)
@click.option("--batch-size", default=8, show_default=True)
@click.option("--images", default=48, show_default=True, help="Training images per measured pass.")
@click.option("--repeats", default=3, show_default=True)
def main(model_name, size, batch_size, images, repeats):
    data = ensure_synthetic_dataset(num_train=images, num_val=8, num_test=8)
    coco = CocoDataset(data / "train.json")
    common = dict(size=(size, size), mean=IMAGENET_MEAN, std=IMAGENET_STD, full_labels=False)
    plain = SegmentationDataset(coco, **common)
    cached = SegmentationDataset(coco, decoded=decoded_split(coco, size=(size, size), progress=False), **common)

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {len(coco)} images of"
        f" {coco.images[0].width}x{coco.images[0].height}, size {size}, batch {batch_size}"
    )
    no_cache, with_cache = [], []
    for _ in range(repeats):
        no_cache.append(loader_throughput(plain, batch_size))
        with_cache.append(loader_throughput(cached, batch_size))
    slow, fast = statistics.median(no_cache), statistics.median(with_cache)
    print(f"data loading only: no cache {slow:7.1f} img/s, --cache {fast:7.1f} img/s, ratio {fast / slow:.1f}x")

    batches = _batches(cached, batch_size)
    torch.manual_seed(0)
    model = get_model(model_name, num_classes=coco.num_classes).to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    bare_loop(model, optimizer, batches[:2])  # warm-up: allocator, oneDNN kernels
    bare, ours = [], []
    for _ in range(repeats):
        bare.append(bare_loop(model, optimizer, batches))
        ours.append(tseg_loop(model, optimizer, batches, coco.num_classes))
    b, o = statistics.median(bare), statistics.median(ours)
    print(f"training loop ({model_name}): bare PyTorch {b:6.2f} img/s, tseg {o:6.2f} img/s, ratio {o / b:.3f}")
    loader = torch.utils.data.DataLoader(plain, batch_size=batch_size, collate_fn=collate_with_full_labels)
    decoding = bare_loop(model, optimizer, loader)  # batches decoded as the loop goes
    print(
        f"one epoch, model + data: decoding JPEGs {decoding:6.2f} img/s, --cache {b:6.2f} img/s ({b / decoding:.2f}x)"
    )


if __name__ == "__main__":
    main()
