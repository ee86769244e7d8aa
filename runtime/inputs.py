"""Opening what the user hands tseg: regular files only, never a blocking open, reads with a bound.

A FIFO named ``crf.json`` would block ``open`` forever, a link to ``/dev/zero`` would be read
until memory runs out, and a sparse 4 GB "model" would be read whole before anything says
no. Every input file therefore goes through :func:`open_input` (a regular file, opened
without blocking), small files through :func:`read_input` (at most ``limit`` bytes), and
model files through :func:`check_model_file` (size and header) before they are read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from tseg.runtime.errors import TsegError
from tseg.runtime.paths import kind_of, parameter_named

MAX_SETTINGS_BYTES = 1 << 20  # a JSON of settings (crf.json, settings.json): a few hundred bytes in practice
# Protocol Buffers cannot encode a message over 2 GiB: a bigger model keeps its weights as external data.
MAX_MODEL_BYTES = (2 << 30) - 1
# ModelProto's fields and wire types (onnx.proto): a real file starts with one of them.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}


def _refuse(path: Path, what: str, kind: str) -> TsegError:
    return TsegError(f"{what} {path} is {kind}, not a file: need a regular file", parameter=parameter_named(what))


def open_input(path: str | Path, *, what: str) -> BinaryIO:
    """Opens ``path`` for reading in binary mode if it is a regular file (links followed).

    FIFOs, devices, sockets and folders are refused without being opened for real (the
    open is non-blocking and checked with ``fstat``), so nothing can hang or be read
    without end.

    Args:
        path: the file.
        what: how the user knows it, for the error: a parameter's name ("model"), which the
            CLIs show as their flag, or a description ("crf.json").

    Raises:
        TsegError: missing, unreadable, a symbolic-link loop, or not a regular file.
    """
    path = Path(path)
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = kind_of(info.st_mode)
            raise _refuse(path, what, f"a link to {kind}" if path.is_symlink() else kind)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise TsegError(f"{what} file not found: {path}", parameter=parameter_named(what)) from None
    except PermissionError:
        raise TsegError(f"{what} {path}: permission denied", parameter=parameter_named(what)) from None
    except OSError as err:
        raise TsegError(f"{what} {path}: {err.strerror or err}", parameter=parameter_named(what)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # swapped for something else since the stat
        os.close(fd)
        raise _refuse(path, what, "a special file")
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_input(path: str | Path, *, what: str, limit: int = MAX_SETTINGS_BYTES) -> bytes:
    """The whole content of a small regular file, refused when larger than ``limit`` bytes.

    Raises:
        TsegError: as :func:`open_input`, or the file is over ``limit``.
    """
    with open_input(path, what=what) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise TsegError(
            f"{what} {path} is larger than {limit:,} bytes: not the small file expected",
            parameter=parameter_named(what),
        )
    return data


def check_model_file(path: str | Path, *, what: str = "model") -> int:
    """Checks an .onnx file's size and first bytes before anything reads it whole.

    Returns:
        Its size in bytes.

    Raises:
        TsegError: not a regular file, empty, over :data:`MAX_MODEL_BYTES`, or not
            starting like an ONNX model (a Protocol Buffers ModelProto).
    """
    with open_input(path, what=what) as handle:
        size = os.fstat(handle.fileno()).st_size
        head = handle.read(16)
    parameter = parameter_named(what)
    if size == 0:
        raise TsegError(f"{what} {path} is empty: need an .onnx file exported by tseg-export", parameter=parameter)
    if size > MAX_MODEL_BYTES:
        raise TsegError(
            f"{what} {path} is {size / (1 << 30):.1f} GiB: an ONNX file holds at most 2 GiB"
            " (bigger models keep their weights as external data); not a model tseg can read",
            parameter=parameter,
        )
    if not _starts_like_model(head):
        raise TsegError(
            f"{what} {path} is not an ONNX model (its first bytes are not an ONNX ModelProto)", parameter=parameter
        )
    return size


def _starts_like_model(head: bytes) -> bool:
    """True when ``head`` begins with the tag of one of ModelProto's fields (a varint)."""
    tag, shift = 0, 0
    for byte in head[:5]:
        tag |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            field, wire = tag >> 3, tag & 7
            return _MODEL_FIELDS.get(field) == wire
    return False
