"""Per-cell label tables on disk: export, validated import merged by (image, label), autosave.

Why a module of its own: labels are hours of a hematologist's work. Import never overwrites the
table it is given (it returns a merged copy and says which cells no longer exist), and the
:class:`Autosaver` rewrites its file through a temporary file + ``os.replace``, so a crash at any
moment leaves either the previous or the new complete file, never half of one.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .cells import (
    CENTROID_X,
    CENTROID_Y,
    CLASS,
    CLASS_SOURCE,
    CLUSTER,
    CONFIDENCE,
    IMAGE,
    KEY_COLUMNS,
    LABEL,
    SUBJECT,
    UMAP,
    load_table,
    save_table,
)
from .propagate import MANUAL, unlabeled_mask

LABEL_COLUMNS = (IMAGE, SUBJECT, LABEL, CENTROID_Y, CENTROID_X, CLASS, CLASS_SOURCE, CONFIDENCE)
OPTIONAL_COLUMNS = (*UMAP, CLUSTER)
AUTOSAVE_COLUMNS = (IMAGE, LABEL, CLASS)
_CLASS_COLUMNS = (CLASS, CLASS_SOURCE, CONFIDENCE)


def _atomic_save(df: pd.DataFrame, path: Path) -> Path:
    """``cells.save_table`` into a sibling temporary file, then one atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        save_table(df, tmp)
        with open(tmp, "rb+") as handle:  # on disk before the rename, not only in the page cache
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def label_table(features: pd.DataFrame) -> pd.DataFrame:
    """The export view of a cell table: :data:`LABEL_COLUMNS` plus umap / cluster if present."""
    missing = [c for c in LABEL_COLUMNS if c not in features.columns and c not in _CLASS_COLUMNS]
    if missing:
        raise ValueError(
            f"the cell table lacks {missing} needed for a label export; it has "
            f"{list(features.columns)}"
        )
    table = features.copy()
    for column in _CLASS_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan if column == CONFIDENCE else None
    columns = [*LABEL_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in table.columns)]
    return table[columns].reset_index(drop=True)


def export_labels(features: pd.DataFrame, path) -> Path:
    """Write the label table to ``.csv`` or ``.parquet`` (by suffix), atomically."""
    table = label_table(features)
    for column in (CLASS, CLASS_SOURCE):
        table[column] = table[column].astype(object)
    return _atomic_save(table, Path(path))


def _file_columns(path: Path) -> list[str]:
    if path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(pd.read_csv(path, nrows=0).columns)


def read_labels(path) -> pd.DataFrame:
    """Read a label table; a ``ValueError`` listing expected vs found columns if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label table at {path}")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"label tables are .csv or .parquet files, got '{path.name}'")
    found = _file_columns(path)
    missing = [c for c in LABEL_COLUMNS if c not in found]
    if missing:
        raise ValueError(
            f"{path.name} is not a label table: expected columns {list(LABEL_COLUMNS)}, "
            f"found {found} (missing {missing}); nothing was imported"
        )
    table = load_table(path, required=LABEL_COLUMNS)
    for column in (CLASS, CLASS_SOURCE):  # empty cells read back as NaN: keep them as None
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return table


@dataclass
class MergeResult:
    """The merged copy of the table and what could not be merged."""

    table: pd.DataFrame
    n_matched: int
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows for cells that are gone

    @property
    def message(self) -> str:
        text = f"imported labels for {self.n_matched} cell(s)"
        if len(self.missing):
            keys = self.missing[list(KEY_COLUMNS)].head(5).to_records(index=False).tolist()
            text += (f"; {len(self.missing)} labeled cell(s) no longer exist in the loaded "
                     f"images (e.g. (label, image) {keys}) and were skipped")
        return text


def merge_labels(
    features: pd.DataFrame, labels: pd.DataFrame, *, class_names: Iterable[str] | None = None,
    manual_only: bool = False,
) -> MergeResult:
    """Copy ``class``, ``class_source``, ``confidence`` from ``labels`` into a copy of ``features``.

    Cells are matched by (image, label); labels for cells not in ``features`` are returned in
    ``missing``. Classes outside ``class_names`` raise a ``ValueError`` before anything changes.
    """
    labels = labels[labels[CLASS_SOURCE].astype(str) == MANUAL] if manual_only else labels
    labels = labels[~unlabeled_mask(labels[CLASS])]
    if class_names is not None:
        unknown = sorted(set(labels[CLASS].astype(str)) - set(map(str, class_names)))
        if unknown:
            raise ValueError(
                f"the labels use classes not in the current class set: {unknown}; add them to "
                "the class set first (nothing was imported)"
            )
    keys = list(KEY_COLUMNS)
    table = features.copy()
    for column in _CLASS_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan if column == CONFIDENCE else None
        elif column != CONFIDENCE:
            table[column] = table[column].astype(object)
    position = pd.Series(np.arange(len(table)), index=pd.MultiIndex.from_frame(table[keys]))
    lookup = pd.MultiIndex.from_frame(labels[keys].astype({LABEL: "int64", IMAGE: str}))
    found = lookup.isin(position.index)
    rows = position.loc[lookup[found]].to_numpy()
    for column in _CLASS_COLUMNS:
        values = labels.loc[found, column].to_numpy()
        table.iloc[rows, table.columns.get_loc(column)] = values
    return MergeResult(table, int(found.sum()), labels.loc[~found].reset_index(drop=True))


def import_labels(path, features: pd.DataFrame, **kwargs) -> MergeResult:
    """:func:`read_labels` then :func:`merge_labels` (``features`` itself is never modified)."""
    return merge_labels(features, read_labels(path), **kwargs)


class Autosaver:
    """Keeps the manual labels in a small CSV (image, label, class), rewritten atomically.

    Call :meth:`record` on every label click (or :meth:`sync` with the whole table); after a
    crash, :meth:`restore` gives the labels back for :func:`merge_labels`.
    """

    def __init__(self, path):
        self.path = Path(path)
        if self.path.suffix.lower() != ".csv":
            raise ValueError(f"the autosave file must be a .csv, got '{self.path.name}'")
        self._labels: dict[tuple[str, int], str] = {}
        if self.path.exists():
            saved = self.restore()
            for image, label, class_name in zip(saved[IMAGE], saved[LABEL], saved[CLASS]):
                self._labels[(str(image), int(label))] = str(class_name)

    def __len__(self) -> int:
        return len(self._labels)

    def record(self, image: str, label: int, class_name: str | None) -> None:
        """Set (or with ``None`` / ``""`` clear) one cell's manual label and save."""
        key = (str(image), int(label))
        if class_name is None or not str(class_name).strip():
            self._labels.pop(key, None)
        else:
            self._labels[key] = str(class_name)
        self._write()

    def sync(self, features: pd.DataFrame) -> None:
        """Replace the saved labels with the table's manual labels and save."""
        manual = features[
            (features[CLASS_SOURCE].astype(str) == MANUAL) & ~unlabeled_mask(features[CLASS])
        ]
        self._labels = {
            (str(i), int(lb)): str(c)
            for i, lb, c in zip(manual[IMAGE], manual[LABEL], manual[CLASS])
        }
        self._write()

    def frame(self) -> pd.DataFrame:
        """The saved manual labels as a table with ``class_source = "manual"``."""
        rows = [(i, lb, c) for (i, lb), c in sorted(self._labels.items())]
        frame = pd.DataFrame(rows, columns=list(AUTOSAVE_COLUMNS)).astype({LABEL: "int64"})
        return frame.assign(**{CLASS_SOURCE: MANUAL, CONFIDENCE: 1.0})

    def restore(self) -> pd.DataFrame:
        """Read the autosave file back (image, label, class, class_source, confidence)."""
        if pd.read_csv(self.path, nrows=1).empty:  # saved with no labels: header only
            return self.frame().iloc[:0]
        table = load_table(self.path, required=AUTOSAVE_COLUMNS)
        return table[list(AUTOSAVE_COLUMNS)].assign(**{CLASS_SOURCE: MANUAL, CONFIDENCE: 1.0})

    def _write(self) -> None:
        _atomic_save(self.frame()[list(AUTOSAVE_COLUMNS)], self.path)
