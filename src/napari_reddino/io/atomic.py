"""Write files so that a failed write never destroys the previous one.

Every file the project writes goes through :func:`replacing`: the content is written under a
hidden temporary name in the same folder, flushed to disk and moved over the target with
``os.replace`` (atomic on POSIX and Windows within one filesystem). A full disk, a ``ulimit -f``
or a crash therefore leaves the old file as it was, and the error (:class:`WriteError`) names the
file and the cause instead of a bare ``[Errno 27]``.

Spreadsheets run cells that start with ``=``, ``+``, ``-``, ``@`` (and tab / carriage return)
as formulas; :func:`escape_formulas` prefixes such text with ``'`` as OWASP recommends, so a
class or subject name cannot run anything when a CSV export is opened in Excel or LibreOffice.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class WriteError(OSError):
    """A file could not be written; the previous file (if any) is left untouched."""


def _temporary_name(path: Path) -> Path:
    # short, so that a long target name still fits the filesystem's 255-byte limit
    return path.with_name(f".tmp-{uuid.uuid4().hex[:12]}{path.suffix}")


def _fsync(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@contextlib.contextmanager
def replacing(path: str | Path, what: str = "file") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    Works for single files and for folders (a zarr store written whole): a folder target is
    swapped in by renaming the old one aside first, so a failure leaves the old folder in place.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise WriteError(f"could not write {what} {path}: cannot create its folder "
                         f"({error.strerror or error})") from error
    tmp = _temporary_name(path)
    try:
        yield tmp
        _fsync(tmp)
        if tmp.is_dir() and path.is_dir():
            old = _temporary_name(path)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException as error:
        _remove(tmp)
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            cause = error.strerror or str(error)
            if getattr(error, "errno", None) == 27:  # EFBIG: ulimit -f
                cause = "file size limit exceeded"
            raise WriteError(f"could not write {what} {path}: {cause}; the previous file, if "
                             "any, is unchanged") from error
        raise


def write_text(path: str | Path, text: str, what: str = "file") -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with replacing(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes, what: str = "file") -> Path:
    """Write ``data`` to ``path`` atomically."""
    with replacing(path, what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def escape_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that a spreadsheet would run as a formula start with ``'``.

    Only object/string/categorical columns are touched: numbers such as ``-0.5`` stay numbers.
    """
    out = frame.copy()
    for column in out.columns:
        series = out[column]
        if isinstance(series.dtype, pd.CategoricalDtype):
            series = series.astype(object)
        elif not (series.dtype == object or pd.api.types.is_string_dtype(series.dtype)):
            continue
        text = series.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS))
        if text.any():
            series = series.where(~text, "'" + series.astype(str))
        out[column] = series
    return out


def write_csv(frame: pd.DataFrame, path: str | Path, what: str = "table") -> Path:
    """Write a CSV atomically, formula-like text escaped (for exports a person opens)."""
    with replacing(path, what) as tmp:
        escape_formulas(frame).to_csv(tmp, index=False)
    return Path(path)


def write_parquet(frame: pd.DataFrame, path: str | Path, what: str = "table") -> Path:
    """Write a parquet file atomically."""
    with replacing(path, what) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def write_npz(path: str | Path, what: str = "arrays", **arrays: np.ndarray) -> Path:
    """Write an uncompressed ``.npz`` atomically (no pickles)."""
    with replacing(path, what) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)
