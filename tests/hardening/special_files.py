"""Files that are not plain files, or not plain-sized: FIFOs, device nodes, link loops, sparse giants.

Each is made in one call, cheaply: a FIFO blocks a reader that opens it until a writer comes
(none ever does), a device node reads like /dev/null or /dev/zero, a sparse file of gigabytes
takes no disk space (``truncate``), and a file of spaces is a valid but oversized JSON file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

GIB = 1 << 30
MIB = 1 << 20
NULL_DEVICE = (1, 3)  # major, minor of /dev/null
ZERO_DEVICE = (1, 5)  # of /dev/zero

KINDS = ("fifo", "device", "zero-device", "loop", "dev-zero-link", "sparse-1g", "sparse-4g", "spaces-50m")


def make_special(path: Path, kind: str) -> Path:
    """Makes ``path`` one of :data:`KINDS` (its parent must exist).

    Args:
        path: where (must not exist).
        kind: "fifo"; "device" (a character device like /dev/null) or "zero-device" (like
            /dev/zero), which need root; "loop" (a symlink to itself); "dev-zero-link" (a
            symlink to /dev/zero); "sparse-1g" or "sparse-4g" (a file of zeros, not written);
            "spaces-50m" (50 MB of spaces then ``{}``: valid JSON, far too big for a setting).

    Raises:
        PermissionError: a device node without the right to make one.
        ValueError: an unknown kind.
    """
    if kind == "fifo":
        os.mkfifo(path, 0o600)
    elif kind in ("device", "zero-device"):
        major, minor = NULL_DEVICE if kind == "device" else ZERO_DEVICE
        os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(major, minor))
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dev-zero-link":
        path.symlink_to("/dev/zero")
    elif kind.startswith("sparse-"):
        with open(path, "wb") as handle:
            handle.truncate({"sparse-1g": GIB, "sparse-4g": 4 * GIB}[kind])
    elif kind == "spaces-50m":
        with open(path, "wb") as handle:
            handle.write(b" " * (50 * MIB) + b"{}\n")
    else:
        raise ValueError(f"unknown special file kind {kind!r}; valid: {', '.join(KINDS)}")
    return path
