"""What tseg-bench refuses before any timing: bad input is one line and exit 1, never a failed row.

A row that fails while the benchmark runs (a GPU provider that does not load, a kernel out of
memory) still fails the run; what can be known before timing is refused here instead:
threads beyond the machine's CPUs, a batch whose input and logits alone exceed the
machine's memory, a --coco split with another class count than a model's. (Model files
are opened up front as tseg-infer opens them: see :func:`~tseg.benchmarks.rows.plan_rows`.)
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from tseg.benchmarks.rows import EAGER_DEVICES, eager_sizes, load_eager_plugin, row_sizes
from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.model.metadata import ModelMetadata
from tseg.runtime.model.session import MAX_THREADS

FLOAT32_BYTES = 4
IMAGE_CHANNELS = 3


def check_threads(threads: object) -> None:
    """Refuses intra-op threads that are not an integer in 1..:data:`~tseg.runtime.model.session.MAX_THREADS`.

    Raises:
        TsegError: names ``threads`` and the machine's limit.
    """
    if threads is None:
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= MAX_THREADS:
        raise TsegError(f"threads: need an integer in 1..{MAX_THREADS} (this machine's CPUs), got {threads!r:.40}")


def physical_memory() -> int | None:
    """The machine's physical memory in bytes (None where the OS does not say: Windows)."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def batch_bytes(batch: int, size: tuple[int, int], classes: int) -> int:
    """Bytes of one batch's float32 input (batch, 3, H, W) and logits (batch, classes, H, W)."""
    height, width = size
    return batch * (IMAGE_CHANNELS + classes) * height * width * FLOAT32_BYTES


def check_batch_memory(shapes: Iterable[tuple[str, tuple[int, int], int, int]], *, memory: int | None) -> None:
    """Refuses a row whose one batch's input and logits would not fit in the machine's memory.

    Args:
        shapes: (model name, (height, width), batch, classes) of each row.
        memory: the machine's physical memory in bytes (:func:`physical_memory`); None: not known,
            nothing is refused.

    Raises:
        TsegError: names the size, the batch, the bytes needed and the memory.
    """
    if memory is None:
        return
    for model, size, batch, classes in shapes:
        need = batch_bytes(batch, size, classes)
        if need > memory:
            raise TsegError(
                f"size {size[0]}x{size[1]} with batch_sizes={batch}: one batch of {model} (float32 input and"
                f" {classes}-class logits) takes {need / 1e9:,.1f} GB, more than this machine's"
                f" {memory / 1e9:,.1f} GB of memory; give smaller sizes (sizes) or batches (batch_sizes)"
            )


def check_split_classes(dataset: CocoDataset, models: Mapping[str, Sequence[str]]) -> None:
    """Refuses a COCO split whose class count differs from a model's (as tseg-infer --eval does).

    Args:
        models: how each model is named in the error ("the model best.onnx") -> its classes.

    Raises:
        TsegError: :meth:`~tseg.runtime.data.coco.CocoDataset.check_model_classes`'s line.
    """
    for what, classes in models.items():
        dataset.check_model_classes(classes, what=what)


def check_checkpoint(checkpoint: Path) -> tuple[str, ...]:
    """Refuses a checkpoint that is missing or not tseg's; returns its class names.

    Raises:
        TsegError: missing, torch not installed, or not a loadable tseg checkpoint.
    """
    if not checkpoint.is_file():
        raise TsegError(f"checkpoint not found: {checkpoint}")
    return tuple(load_eager_plugin().check_checkpoint(checkpoint))


def check_sizes(metas: Sequence[tuple[Path, ModelMetadata]], *, checkpoint: Path | None, sizes,
                devices: Sequence[str]) -> None:
    """Refuses sizes a row's engine cannot take: TensorRT's engine size, the eager rows' squares.

    Args:
        metas: each model file and its metadata.
        checkpoint: the checkpoint of the eager rows, or None.
        sizes: (height, width) pairs; empty: each model's own input size.
        devices: the devices asked for.

    Raises:
        TsegError: device "tensorrt" with a size other than a model's own; eager rows with
            a model's own size that is not square, or with no size at all.
    """
    if "tensorrt" in devices:
        for path, meta in metas:
            other = [size for size in row_sizes(meta, sizes) if size != meta.input_size]
            if other:
                raise TsegError(
                    f"devices='tensorrt' with sizes={other[0][0]}: TensorRT engines are built for the model's"
                    f" input size ({path.name}: {meta.input_size[0]}x{meta.input_size[1]}; tseg-infer resizes every"
                    " image to it); give no sizes (sizes), or benchmark tensorrt in a run of its own"
                )
    if checkpoint is None or not any(d in EAGER_DEVICES for d in devices):
        return
    planned = eager_sizes(metas, sizes)
    if not planned:
        raise TsegError(
            "checkpoint without a MODEL.onnx: give the eager rows' input sizes (sizes)", parameter="checkpoint"
        )
    other = [size for size in planned if size[0] != size[1]]
    if other:
        raise TsegError(
            f"checkpoint: the PyTorch eager rows take square sizes, and a model's own input size is"
            f" {other[0][0]}x{other[0][1]}: give square sizes (sizes)",
            parameter="checkpoint",
        )


def open_models(paths: Iterable[Path], *, threads: int | None) -> dict[Path, object]:
    """Opens each model file as tseg-infer does (a :class:`~tseg.runtime.segment.segmenter.Segmenter` on the CPU).

    So a file that tseg-infer or ONNX Runtime refuses (external data outside its folder, a
    graph that does not fit its metadata, a graph ONNX Runtime cannot load) is refused in
    one line before any timing, not as failed rows.

    Returns:
        Each file's CPU session (its CPU rows time it).

    Raises:
        TsegError: the Segmenter's one line.
    """
    from tseg.runtime.segment.segmenter import Segmenter

    return {path: Segmenter(path, device="cpu", threads=threads, batch_size=1).session for path in dict.fromkeys(paths)}
