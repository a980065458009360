"""Per-user folders: the numba cache, label autosaves."""

from __future__ import annotations

import os
import time
from pathlib import Path


def user_cache_dir() -> Path:
    """Per-user cache folder (``$XDG_CACHE_HOME/napari-reddino`` or ``~/.cache/...``)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "napari-reddino"


AUTOSAVE_GLOB = "labels-*.csv"  # what session_autosave_path names, for finding them again


def autosave_dir() -> Path:
    """Where every session's label autosaves go (the restore offer reads them back)."""
    return user_cache_dir() / "autosave"


def session_autosave_path() -> Path:
    """A new autosave file for this session's manual labels (one per session: a crash and a
    restart never overwrite the labels of the session that crashed)."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return autosave_dir() / f"labels-{stamp}-{os.getpid()}.csv"


def configure_numba_cache(folder: str | Path | None = None) -> Path:
    """Point numba's on-disk cache at ``folder`` (default: the user cache) unless already set.

    Called by the first map of a process, not at import: importing the plugin changes nothing.
    Here (a leaf) so ``project`` and ``_umap_fast`` both use it without importing each other.
    """
    path = Path(os.environ.get("NUMBA_CACHE_DIR") or folder or user_cache_dir() / "numba")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # read-only home: numba falls back to its own default, still correct
        return path
    os.environ["NUMBA_CACHE_DIR"] = str(path)
    try:  # numba reads the variable at import; refresh it if numba is already loaded
        import sys

        if "numba" in sys.modules:
            sys.modules["numba"].config.reload_config()
    except Exception:  # a read-only config must never stop a projection
        pass
    return path
