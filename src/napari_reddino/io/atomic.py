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
import errno
import os
import re
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


def _cause(error: OSError) -> str:
    """The cause of a failed write in words, also when a library (pyarrow, h5py, anndata)
    rewrapped the error and kept its number only in the message."""
    number = error.errno
    if number is None:
        found = re.search(r"errno\]?\s*=?\s*(\d+)", str(error), flags=re.IGNORECASE)
        number = int(found.group(1)) if found else None
    if number == errno.EFBIG:  # ulimit -f, or the filesystem's largest file
        return "file size limit exceeded"
    if number is not None:
        return os.strerror(number).lower()
    return error.strerror or str(error).splitlines()[0]


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
        if isinstance(error, WriteError) and getattr(error, "target", None) == str(tmp):
            error = error.__cause__ or error  # a nested replacing() of our temporary file
        if isinstance(error, OSError) and not isinstance(error, WriteError):
            failed = WriteError(f"could not write {what} {path}: {_cause(error)}; the previous "
                                "file, if any, is unchanged")
            failed.target = str(path)  # not .filename: OSError would print "[Errno None]"
            raise failed from error
        raise


@contextlib.contextmanager
def replacing_all(targets: dict[Path, str]) -> Iterator[dict[Path, Path]]:
    """:func:`replacing` for several files that belong together (``{path: what}``).

    Every temporary file is written before any target is replaced, so a failure while writing
    one of them leaves all of the previous files in place.
    """
    with contextlib.ExitStack() as stack:
        yield {Path(path): stack.enter_context(replacing(path, what))
               for path, what in targets.items()}


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
