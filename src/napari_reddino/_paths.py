"""Per-user folders: the numba cache, label autosaves."""

from __future__ import annotations

import os
import time
from pathlib import Path


def user_cache_dir() -> Path:
    """Per-user cache folder (``$XDG_CACHE_HOME/napari-reddino`` or ``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-reddino"


def session_autosave_path() -> Path:
    """A new autosave file for this session's manual labels (one per session: a crash and a
    restart never overwrite the labels of the session that crashed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return user_cache_dir() / "autosave" / f"labels-{stamp}-{os.getpid()}.csv"
