"""Decode and resize a split once into uint8 .npy memmaps (`tseg-train --cache`).

At 256 px an epoch is otherwise bound by JPEG decoding and polygon rasterising.
The files are shared by DataLoader workers and by later runs at the same size;
a run that crashes while building leaves no half-written cache behind.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tseg.runtime.data.coco import CocoDataset
from tseg.runtime.errors import TsegError
from tseg.runtime.files import TempFile
from tseg.runtime.images import resize_image, resize_labels

CACHE_VERSION = 1


def default_decoded_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tseg/decoded`` or ``~/.cache/tseg/decoded``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tseg" / "decoded"


def _cache_key(coco: CocoDataset, size: Sequence[int]) -> str:
    """Changes whenever the split's JSON, its root or the size changes."""
    stat = coco.json_path.stat()
    ident = [
        CACHE_VERSION,
        str(coco.json_path.resolve()),
        str(coco.root.resolve()),
        stat.st_size,
        stat.st_mtime_ns,
        list(size),
    ]
    return hashlib.sha256(json.dumps(ident).encode()).hexdigest()[:16]


class DecodedSplit:
    """A split's images and label maps at one size, memory-mapped read-only.

    Attributes:
        images: (N, h, w, 3) uint8.
        labels: (N, h, w) uint8 (uint16 beyond 256 classes).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.images = np.load(folder / "images.npy", mmap_mode="r")
        self.labels = np.load(folder / "labels.npy", mmap_mode="r")


def _build(coco: CocoDataset, size: Sequence[int], target: Path, progress: bool) -> None:
    height, width = size
    temp = TempFile(target, folder=True)  # also removes what a killed build of this cache left
    tmp = temp.temp
    try:
        label_dtype = np.uint8 if coco.num_classes <= 256 else np.uint16
        images = np.lib.format.open_memmap(tmp / "images.npy", "w+", np.uint8, (len(coco), height, width, 3))
        labels = np.lib.format.open_memmap(tmp / "labels.npy", "w+", label_dtype, (len(coco), height, width))
        for name in ("images.npy", "labels.npy"):
            _reserve(tmp / name)
        for i in tqdm(
            range(len(coco)), desc=f"cache {coco.json_path.name}", unit="img", disable=not progress
        ):
            images[i] = resize_image(coco.read_image(i), size)
            labels[i] = resize_labels(coco.label_map(i), size)
        images.flush()
        labels.flush()
        del images, labels
        meta = {"json": str(coco.json_path), "size": list(size), "count": len(coco)}
        (tmp / "meta.json").write_text(json.dumps(meta))
    except BaseException as err:
        temp.discard()
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TsegError(
                f"no space left on the device for the decoded cache in {target.parent}; free space,"
                " set XDG_CACHE_HOME elsewhere or train without the decoded cache (cache)"
            ) from None
        raise
    try:
        temp.commit()
    except OSError:  # another process finished the same cache first (commit removed our copy)
        pass


def _reserve(path: Path) -> None:
    """Allocates a memmap's blocks now: on a full disk, writing a sparse memmap is a SIGBUS later.

    Raises:
        OSError: ENOSPC/EDQUOT when the disk cannot hold the file (unsupported file systems pass).
    """
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
        except OSError as err:
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise


def decoded_split(
    coco: CocoDataset, *, size: Sequence[int], cache_dir: Path | None = None, progress: bool = True
) -> DecodedSplit:
    """The split decoded at ``size`` (height, width), built on first use."""
    folder = (cache_dir or default_decoded_cache_dir()) / _cache_key(coco, size)
    if not (folder / "meta.json").is_file():
        _build(coco, tuple(size), folder, progress)
    return DecodedSplit(folder)
