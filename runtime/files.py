"""Writing files so that nothing is lost: atomic replaces, ordinary permissions, no escapes.

Every file tseg writes goes through :func:`atomic_write`: the data goes to a hidden
temp file in the destination folder, then ``os.replace`` puts it in place, so a crash,
a full disk or Ctrl-C leaves either the old file or the complete new one. Temp files
from ``tempfile.mkstemp`` are created 0600; the result is given the permissions a
plain ``open(path, "w")`` would have (0666 less the umask). A temp file left behind by
a killed process keeps the ``.tmp`` suffix and is removed by :func:`remove_stale_temp_files`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from tseg.runtime.errors import TsegError

TEMP_SUFFIX = ".tseg-tmp"


def current_umask() -> int:
    """The process's umask (what new files' permissions are masked with)."""
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name_prefix(path: Path) -> str:
    """The prefix of the temp files that :func:`atomic_write` makes for ``path``."""
    return f".{path.name}."


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> None:
    """Writes ``path`` atomically with a callable that fills a temp file.

    Args:
        path: the destination; its parent folders are created.
        write: called with the temp file's path (which exists, empty); it writes the
            complete content there (e.g. ``torch.save(obj, tmp)``).

    Raises:
        TsegError: the disk is full or over quota (the old file, if any, is intact).
        OSError: other file-system errors (missing permission, ...).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=temp_name_prefix(path), suffix=TEMP_SUFFIX)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise TsegError(f"no space left on the device to write {path} (nothing was replaced)") from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old or the complete new file."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def remove_stale_temp_files(folder: str | Path) -> list[Path]:
    """Deletes temp files that a killed :func:`atomic_write` left in ``folder`` (not recursive).

    Returns:
        The files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in folder.glob(f".*{TEMP_SUFFIX}"):
        if candidate.is_file():
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def is_within(path: str | Path, folder: str | Path) -> bool:
    """True when ``path`` is ``folder`` or lies inside it (symlinks resolved)."""
    path, folder = Path(path).resolve(), Path(folder).resolve()
    return path == folder or folder in path.parents


def safe_relative_path(relative: str | Path, *, what: str) -> Path:
    """A relative path that stays inside whatever folder it is joined to.

    Args:
        relative: e.g. a COCO ``file_name``.
        what: names the path in the error (e.g. "val.json, image 7's file_name").

    Raises:
        TsegError: the path is absolute, empty, or climbs out with ``..``.
    """
    text = str(relative)
    pure = Path(text)
    if not text or text in (".",) or pure.is_absolute() or pure.drive or ".." in pure.parts or "\x00" in text:
        raise TsegError(f"{what}: need a relative path inside the data folder, got {text!r}")
    return pure


def check_outputs_apart(out: str | Path, inputs: Iterable[str | Path], *, what: str = "--out") -> None:
    """Refuses an output folder that is, or lies inside, the folder of one of ``inputs``.

    Writing results into an input folder would replace input files with the same
    name and have the next run read its own outputs as inputs.

    Raises:
        TsegError: naming the output and the input folder it overlaps.
    """
    for source in inputs:
        source = Path(source)
        folder = source if source.is_dir() else source.parent
        if is_within(out, folder):
            raise TsegError(
                f"{what} {out} overlaps the input folder {folder}: choose an output folder outside the inputs"
            )


def create_run_dir(runs_dir: str | Path, name: str) -> Path:
    """Makes ``runs_dir/name``, or name-2, name-3 ... : an earlier run is never overwritten.

    Shared by tseg-train (runs/NAME) and tseg-infer (runs/infer/NAME); ``mkdir`` without
    ``exist_ok`` claims the name atomically, so two runs started together get two folders.

    Raises:
        TsegError: ``name`` is not a plain folder name, or 9999 runs already bear it.
    """
    runs_dir = Path(runs_dir)
    if not name or "/" in name or name in (".", "..") or "\x00" in name:
        raise TsegError(f"run name must be a plain folder name, got {name!r}")
    runs_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 10_000):
        candidate = runs_dir / (name if attempt == 1 else f"{name}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise TsegError(f"too many runs named {name!r} in {runs_dir}")
