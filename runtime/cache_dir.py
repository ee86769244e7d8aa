"""tseg's cache folder: the one place where engines and datasets are kept between runs."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def default_cache_dir() -> Path:
    """tseg's cache folder: $XDG_CACHE_HOME/tseg, else ~/.cache/tseg (%LOCALAPPDATA%\\tseg on Windows)."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg and os.path.isabs(xdg):  # the XDG spec: a relative value is ignored
        return Path(xdg) / "tseg"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "tseg"
    return Path.home() / ".cache" / "tseg"
