"""A run folder's combined cells (``cells.parquet``, ``embeddings.npz``, ``cells.h5ad``) agree.

Why stamps: the three files hold the same cells in three forms, and a command that rewrote one
of them only (``propagate`` used to), a crash between two writes or a file copied in from
another run left them disagreeing without anyone noticing. Every writing of a run's cells now
gives all three one new stamp (``names.RUN_STAMP``: parquet schema metadata, an ``.npz``
array, an ``.uns`` key) and replaces them together (:func:`..io.atomic.replacing_all`); readers
call :func:`check_run_files`, which refuses files whose stamps differ, naming them and the fix.
Run folders written before stamps carry none and are checked as before (cell by cell).
:func:`smear_source` finds a smear's photo wherever the run folder was moved.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import numpy as np

from napari_reddino import names as nm
from napari_reddino.io.cell_table import damaged

#: The files of a run that hold its cells, each stamped when written together.
STAMPED_FILES = (nm.CELLS_TABLE_FILE, nm.EMBEDDINGS_FILE, nm.ANNDATA_FILE)


class RunMismatchError(ValueError):
    """A run folder's cell files were not written together (a stale or foreign file)."""


def new_stamp() -> str:
    """A fresh stamp for one writing of a run's cells."""
    return uuid.uuid4().hex


def fix_hint(run_dir: str | os.PathLike) -> str:
    """What to run to rewrite a run folder's cell files from its smears."""
    return f"rerun `napari-reddino project {run_dir}` to write them again from its smears"


def _parquet_stamp(path: Path) -> str | None:
    import pyarrow.parquet as pq

    metadata = pq.read_schema(path).metadata or {}
    value = metadata.get(nm.RUN_STAMP.encode())
    return value.decode() if value is not None else None


def _npz_stamp(path: Path) -> str | None:
    with np.load(path, allow_pickle=False) as data:
        return str(data["stamp"]) if "stamp" in data.files else None


def _h5ad_stamp(path: Path) -> str | None:
    import h5py

    with h5py.File(path, "r") as handle:
        uns = handle.get("uns")
        value = uns.get(nm.RUN_STAMP) if uns is not None else None
        if value is None:
            return None
        value = value[()]
        return value.decode() if isinstance(value, bytes) else str(value)


_READERS = {".parquet": _parquet_stamp, ".npz": _npz_stamp, ".h5ad": _h5ad_stamp}


def read_stamp(path: str | os.PathLike) -> str | None:
    """The stamp a file was written with (None for a file written without one).

    A file that cannot be opened is named as damaged, with how to write it again.
    """
    path = Path(path)
    try:
        return _READERS[path.suffix.lower()](path)
    except Exception as exc:  # h5py, pyarrow, zipfile each say "truncated" their own way
        fix = fix_hint(path.parent)
        if path.suffix.lower() == ".parquet":  # project refuses to overwrite labels it can't read
            fix = (f"restore it from a backup, or move it away and rerun `napari-reddino "
                   f"project {path.parent}` (labels that were only in it are lost)")
        raise damaged(path, exc, fix) from exc


def run_stamps(run_dir: str | os.PathLike) -> dict[str, str | None]:
    """``{file name: stamp}`` of the cell files present in ``run_dir``."""
    run_dir = Path(run_dir)
    return {name: read_stamp(run_dir / name) for name in STAMPED_FILES
            if (run_dir / name).is_file()}


def check_run_files(run_dir: str | os.PathLike, names=STAMPED_FILES, *,
                    strict: bool = True) -> str | None:
    """The stamp the run's cell files (those of ``names`` present) share; None when any of
    them carries none (an older run folder, or a table edited and saved by another tool).

    Raises :class:`RunMismatchError` naming the files when two stamps differ, and with
    ``strict`` also when some files carry a stamp and others none. Callers that check the
    cells one by one anyway (a table against its ``.npz``) pass ``strict=False``.
    """
    stamps = {k: v for k, v in run_stamps(run_dir).items() if k in names}
    values = set(stamps.values())
    if len(values) <= 1:
        return next(iter(values), None)
    if strict or len(values - {None}) > 1:
        described = ", ".join(f"{name} ({'stamp ' + stamp[:8] if stamp else 'no stamp'})"
                              for name, stamp in stamps.items())
        raise RunMismatchError(f"{run_dir}: {described} were not written together (one is "
                               f"stale or from another run); {fix_hint(run_dir)}")
    return None


def read_summary(run_dir: str | os.PathLike) -> dict:
    """A run's ``summary.json`` (how its map and clusters were made); ``{}`` if it has none."""
    path = Path(run_dir) / nm.SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def smear_source(folder: str | os.PathLike, marker: dict) -> Path | None:
    """A smear folder's photo: beside it as it was (``source_relative``: the run and its images
    moved together), at its absolute ``source``, or relative to the run root; None if gone."""
    folder = Path(folder)
    source = str(marker.get("source") or "")
    if not source:
        return None
    relative = str(marker.get("source_relative") or "")
    candidates = [folder / relative] if relative else []
    candidates += [Path(source), folder.parent.parent / source, folder / source]
    return next((p for p in candidates if p.is_file()), None)
