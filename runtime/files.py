"""Writing files so that nothing is lost: atomic replaces, ordinary permissions, owned temp files.

Every file tseg writes goes through :class:`TempFile` (usually via :func:`atomic_write`):
the data goes to a hidden temp file in the destination folder, then ``os.replace`` puts it
in place, so a crash, a full disk or Ctrl-C leaves either the old file or the complete new
one. The result gets the permissions a plain ``open(path, "w")`` would have (0666 less the
umask), not mkstemp's 0600.

A temp file belongs to its writer: its name carries the writer's process id and the writer
holds an exclusive ``flock`` on it until it is in place. :func:`remove_stale_temp_files`
deletes only temp files whose writer is gone (a killed run), never those of a run that is
still writing beside it. Temp names fit wherever the final name fits (a long name is
shortened and hashed).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from tseg.runtime.errors import TsegError

try:
    import fcntl
except ImportError:  # Windows: ownership is judged by the process id alone
    fcntl = None

TEMP_SUFFIX = ".tseg-tmp"
RUNS_DIR = Path("runs")  # where the commands make new run folders by default (runs/NAME, runs/infer/NAME, ...)
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_TEMP_EXTRA = 40  # bytes a temp name adds: dots, the pid, mkstemp's random part, the suffix
_KEPT_BYTES = NAME_MAX - _TEMP_EXTRA - 14  # of a long name, before its hash ("~" + 12 hex + ".")
_PID = re.compile(r"\.p(\d+)\.")
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def current_umask() -> int:
    """The process's umask (what new files' permissions are masked with)."""
    # os.umask can only be read by setting it; set it straight back.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def temp_name_prefix(path: Path) -> str:
    """The prefix of every temp file written for ``path``: ``.NAME.``, or a shortened, hashed NAME.

    The full temp name (prefix, ``p<pid>.``, a random part, :data:`TEMP_SUFFIX`) then fits
    in :data:`NAME_MAX` bytes whenever ``path``'s own name does.
    """
    name = Path(path).name
    raw = name.encode("utf-8", "surrogateescape")
    if len(raw) + _TEMP_EXTRA <= NAME_MAX:
        return f".{name}."
    kept = raw[:_KEPT_BYTES].decode("utf-8", "ignore")  # whole characters only
    return f".{kept}~{hashlib.sha256(raw).hexdigest()[:12]}."


def no_space_error(err: BaseException, path: Path) -> TsegError | None:
    """The one-line error for a full disk or quota while writing ``path``; None for other errors."""
    if isinstance(err, OSError) and err.errno in _NO_SPACE:
        return TsegError(f"no space left on the device to write {path} (nothing was replaced)")
    return None


class TempFile:
    """A temp file (or folder) beside ``path`` that this process owns until :meth:`commit` or :meth:`discard`.

    Temp files in the folder whose writers are gone are removed first (see
    :func:`_sweep_before_writing`). The temp file
    is locked (``flock``) for as long as it exists, so a concurrent run never deletes it.

    Args:
        path: the destination; its parent folders are created.
        folder: make a temp folder instead of a file (committed with ``os.rename``, which
            never replaces a non-empty folder).

    Attributes:
        path: the destination.
        temp: the temp file's path (exists, empty).
    """

    def __init__(self, path: str | Path, *, folder: bool = False) -> None:
        self.path = Path(path)
        self.folder = folder
        self.path.parent.mkdir(parents=True, exist_ok=True)
        _sweep_before_writing(self.path)
        prefix = temp_name_prefix(self.path) + f"p{os.getpid()}."
        if folder:
            self.temp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=prefix, suffix=TEMP_SUFFIX))
            self._lock = os.open(self.temp, os.O_RDONLY)
        else:
            self._lock, name = tempfile.mkstemp(dir=self.path.parent, prefix=prefix, suffix=TEMP_SUFFIX)
            self.temp = Path(name)
        if fcntl is not None:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a fresh name: nobody else holds it

    def commit(self) -> Path:
        """Gives the temp the permissions ``open``/``mkdir`` would, and puts it at ``path``."""
        try:
            os.chmod(self.temp, (0o777 if self.folder else 0o666) & ~current_umask())
            if self.folder:
                os.rename(self.temp, self.path)
            else:
                os.replace(self.temp, self.path)
        except BaseException:
            self.discard()
            raise
        self._release()
        return self.path

    def discard(self) -> None:
        """Removes the temp file (or folder); ``path`` is untouched."""
        if self.folder:
            shutil.rmtree(self.temp, ignore_errors=True)
        else:
            self.temp.unlink(missing_ok=True)
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the last descriptor drops the flock
            self._lock = None


_swept: dict[tuple[int, int], list[Path]] = {}  # folder identity -> its temp files without a pid
_swept_lock = threading.Lock()


def _sweep_before_writing(target: Path) -> None:
    """Removes dead writers' temp files beside ``target`` without listing its folder at every write.

    The folder is listed once per process: temp files named with a dead writer's pid go
    then. A temp file without a pid in its name (an older tseg's) has no known owner: it
    goes when this process writes that same target, if its lock is free.
    """
    folder = target.parent
    try:
        info = folder.stat()
    except OSError:
        return
    key = (info.st_dev, info.st_ino)
    with _swept_lock:  # held through the one listing: a second writer thread waits for it
        if key not in _swept:
            _swept[key] = []
            for candidate in _temp_files(folder, "."):
                if _PID.search(candidate.name) is None:
                    _swept[key].append(candidate)
                elif _writer_gone(candidate):
                    _remove(candidate)
        prefix = temp_name_prefix(target)
        unowned = [c for c in _swept[key] if c.name.startswith(prefix)]
        for candidate in unowned:
            _swept[key].remove(candidate)
            if _writer_gone(candidate):
                _remove(candidate)


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
    temp = TempFile(path)
    try:
        write(temp.temp)
    except BaseException as err:
        temp.discard()
        full = no_space_error(err, path)
        if full is not None:
            raise full from None
        raise
    try:
        temp.commit()
    except OSError as err:
        full = no_space_error(err, path)
        if full is not None:
            raise full from None
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old or the complete new file."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def _writer_gone(candidate: Path) -> bool:
    """True when no live process owns this temp file (its pid is dead and its lock is free)."""
    match = _PID.search(candidate.name)
    if match is not None and int(match.group(1)) != os.getpid():
        try:
            os.kill(int(match.group(1)), 0)
            return False  # alive (pid reuse is caught by the lock below only when the pid is dead)
        except ProcessLookupError:
            pass
        except PermissionError:
            return False  # alive, owned by another user
    if fcntl is None:
        return match is not None
    try:
        fd = os.open(candidate, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:  # locked: its writer is still at work
        return False
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: str | Path, *, prefix: str = ".") -> list[Path]:
    """Deletes the temp files (and folders) in ``folder`` whose writers are gone (not recursive).

    Args:
        folder: where to look.
        prefix: only temp names starting with this (:func:`temp_name_prefix` of one target).

    Returns:
        What was removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for candidate in _temp_files(folder, prefix):
        if _writer_gone(candidate) and _remove(candidate):
            removed.append(candidate)
    return removed


def _temp_files(folder: Path, prefix: str) -> list[Path]:
    """Temp files and folders in ``folder`` whose names start with ``prefix`` (links skipped)."""
    return [c for c in folder.glob(f"{glob.escape(prefix)}*{TEMP_SUFFIX}") if not c.is_symlink()]


def _remove(candidate: Path) -> bool:
    """Deletes a temp file or folder; False for anything else (a FIFO named like one)."""
    if candidate.is_dir():
        shutil.rmtree(candidate, ignore_errors=True)
    elif candidate.is_file():
        candidate.unlink(missing_ok=True)
    else:
        return False
    return True


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
