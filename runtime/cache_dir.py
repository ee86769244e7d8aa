"""tseg's cache folder: the one place where engines and datasets are kept between runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tseg.runtime.errors import TsegError


def default_cache_dir() -> Path:
    """tseg's cache folder: $XDG_CACHE_HOME/tseg, else ~/.cache/tseg (%LOCALAPPDATA%\\tseg on Windows)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
        return Path(xdg) / "tseg"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "tseg"
    return Path.home() / ".cache" / "tseg"


def make_cache_folder(folder: Path, *, engine: str) -> list[Path]:
    """Makes an engine's cache folder and its missing parents.

    Args:
        folder: the folder (under :func:`default_cache_dir` unless the user chose another).
        engine: names it in the error ("OpenVINO", "TensorRT").

    Returns:
        The folders it made, deepest first (a caller that fails next can remove them).

    Raises:
        TsegError: it cannot be made: one line naming it and XDG_CACHE_HOME.
    """
    made = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise TsegError(
            f"cannot create the {engine} cache folder {folder}: {err.strerror or err}; set XDG_CACHE_HOME to a"
            " writable folder"
        ) from None
    return made
