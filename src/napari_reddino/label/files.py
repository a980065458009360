"""Per-cell label tables on disk: export, validated import merged by (image, label, centroid).

Why a module of its own: labels are hours of a hematologist's work. Import never overwrites the
table it is given (it returns a merged copy and says which cells no longer exist or no longer lie
where they were labeled), exports are written atomically, and the autosave is an append-only
journal (:mod:`napari_reddino.label.journal`, re-exported here).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.io.cell_table import (
    AREA,
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
from napari_reddino.label.journal import AUTOSAVE_COLUMNS, Autosaver, is_journal, read_journal
from napari_reddino.label.propagate import MANUAL, unlabeled_mask
from napari_reddino.names import IMAGE_SHA256

LABEL_COLUMNS = (IMAGE, SUBJECT, LABEL, CENTROID_Y, CENTROID_X, CLASS, CLASS_SOURCE, CONFIDENCE)
OPTIONAL_COLUMNS = (*UMAP, CLUSTER, IMAGE_SHA256)
MIN_TOLERANCE_PX = 4.0
DEFAULT_TOLERANCE_PX = 8.0  # without cell areas
__all__ = ["AUTOSAVE_COLUMNS", "Autosaver", "export_labels", "import_labels", "merge_labels",
           "read_labels"]
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
    except OSError as exc:  # name the file the user chose, not our temporary one
        raise OSError(f"cannot write {path}: {exc.strerror or exc}") from exc
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
    if Path(path).suffix.lower() == ".csv":  # opened in spreadsheets: "=cmd" must not run
        from napari_reddino.io.atomic import write_csv

        return write_csv(table, path, "label table")
    return _atomic_save(table, Path(path))


def _unescape_formulas(table: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`~napari_reddino.io.atomic.escape_formulas` of a CSV export (``'=x`` ->
    ``=x``), so a class or image named ``=x`` reads back as it was labeled."""
    from napari_reddino.io.atomic import FORMULA_STARTS

    starts = tuple("'" + c for c in FORMULA_STARTS)
    for column in table.columns:
        if table[column].dtype == object or pd.api.types.is_string_dtype(table[column]):
            table[column] = table[column].map(
                lambda v: v[1:] if isinstance(v, str) and v.startswith(starts) else v)
    return table


def _file_columns(path: Path) -> list[str]:
    try:
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(path).names)
        return list(pd.read_csv(path, nrows=0).columns)
    except Exception as exc:  # pandas / pyarrow parser errors: the file is not a table
        raise ValueError(f"{path.name} is not a label table: it cannot be read as "
                         f"{path.suffix.lower()[1:]} ({type(exc).__name__}); nothing was "
                         "imported") from exc


def read_labels(path) -> pd.DataFrame:
    """Read a label table (or an autosave); a ``ValueError`` saying why if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no label table at {path}")
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"label tables are .csv or .parquet files, got '{path.name}'")
    found = _file_columns(path)
    missing = [c for c in LABEL_COLUMNS if c not in found]
    if missing and path.suffix.lower() == ".csv" and is_journal(path):
        return read_journal(path)  # the plugin's own autosave
    if missing:
        raise ValueError(
            f"{path.name} is not a label table: expected columns {list(LABEL_COLUMNS)}, "
            f"found {found} (missing {missing}); nothing was imported"
        )
    try:
        table = load_table(path, required=LABEL_COLUMNS)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path.name} is not a valid label table ({exc}); nothing was "
                         "imported") from exc
    for column in (CLASS, CLASS_SOURCE):  # empty cells read back as NaN: keep them as None
        table[column] = table[column].astype(object).where(table[column].notna(), None)
    return _unescape_formulas(table) if path.suffix.lower() == ".csv" else table


@dataclass
class MergeResult:
    """The merged copy of the table and what could not be merged."""

    table: pd.DataFrame
    n_matched: int
    missing: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows for cells that are gone
    moved: pd.DataFrame = field(default_factory=pd.DataFrame)  # rows on no cell at their place
    n_relocated: int = 0  # labels found on their cell under another label number
    other_smears: list = field(default_factory=list)  # same image name, but another smear
    other_content: list = field(default_factory=list)  # same name, another image content hash

    @property
    def message(self) -> str:
        text = f"imported labels for {self.n_matched} cell(s)"
        if self.n_relocated:
            text += (f" ({self.n_relocated} found at their position under a new label number: "
                     "the smear was segmented again)")
        if len(self.missing):
            keys = self.missing[list(KEY_COLUMNS)].head(5).to_records(index=False).tolist()
            text += (f"; {len(self.missing)} labeled cell(s) no longer exist in the loaded "
                     f"images (e.g. (label, image) {keys}) and were skipped")
        if self.other_smears:
            text += (f"; {self.other_smears} look like other smears of the same name (their "
                     "labeled cells do not lie on this smear's cells): their labels were skipped")
        if self.other_content:
            text += (f"; {self.other_content} were labeled on another image of the same name "
                     "(its content hash differs from the loaded smear's): their labels were "
                     "skipped")
        skipped = [*self.other_smears, *self.other_content]
        moved = self.moved[~self.moved[IMAGE].isin(skipped)] if len(self.moved) else []
        if len(moved):
            keys = moved[list(KEY_COLUMNS)].head(5).to_records(index=False).tolist()
            text += (f"; {len(moved)} labeled cell(s) no longer exist where they were labeled "
                     f"(e.g. (label, image) {keys}; the nearest cell is "
                     f"{moved['distance'].min():.0f} px or more away) and were skipped")
        return text


def _tolerance(features: pd.DataFrame) -> np.ndarray:
    """How far (px) a label's centroid may lie from its cell's: half the cell's radius, >= 4."""
    if AREA in features.columns:
        radius = np.sqrt(pd.to_numeric(features[AREA], errors="coerce").to_numpy() / np.pi)
        return np.fmax(np.nan_to_num(radius * 0.5, nan=MIN_TOLERANCE_PX), MIN_TOLERANCE_PX)
    return np.full(len(features), DEFAULT_TOLERANCE_PX)


def _locate(table: pd.DataFrame, labels: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row of ``table`` for each label (-1: none), distance to it, row by (image, label).

    A label goes to the cell with its (image, label) if that cell lies at the recorded centroid;
    else to the cell of its image nearest to the centroid if within tolerance (the smear was
    segmented again, label numbers changed); else nowhere. Without centroids: (image, label).
    """
    from scipy.spatial import cKDTree

    keys = list(KEY_COLUMNS)
    position = pd.Series(np.arange(len(table)), index=pd.MultiIndex.from_frame(table[keys]))
    lookup = pd.MultiIndex.from_frame(labels[keys].astype({LABEL: "int64", IMAGE: str}))
    exact = position.reindex(lookup).fillna(-1).to_numpy(dtype=np.int64)
    centroid = [CENTROID_Y, CENTROID_X]
    if not set(centroid) <= set(labels.columns) or not set(centroid) <= set(table.columns):
        return exact, np.zeros(len(labels)), exact
    where = labels[centroid].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    cells = table[centroid].to_numpy(dtype=float)
    tolerance = _tolerance(table)
    rows = np.where(np.isnan(where).any(axis=1), exact, -1)  # no recorded place: trust the key
    distance = np.zeros(len(labels))
    has_exact = (exact >= 0) & ~np.isnan(where).any(axis=1)
    gap = np.hypot(*(cells[exact[has_exact]] - where[has_exact]).T)
    ok = gap <= tolerance[exact[has_exact]]
    rows[np.flatnonzero(has_exact)[ok]] = exact[has_exact][ok]
    table_images = table[IMAGE].astype(str).to_numpy()
    label_images = labels[IMAGE].astype(str).to_numpy()
    todo = np.flatnonzero((rows < 0) & ~np.isnan(where).any(axis=1))
    for image in pd.unique(label_images[todo]):
        mine = np.flatnonzero(table_images == image)
        ask = todo[label_images[todo] == image]
        if mine.size == 0:
            continue
        dist, nearest = cKDTree(cells[mine]).query(where[ask])
        target = mine[nearest]
        hit = dist <= tolerance[target]
        rows[ask[hit]] = target[hit]
        distance[ask] = dist
    distance[rows >= 0] = 0.0
    return rows, distance, exact


def merge_labels(
    features: pd.DataFrame, labels: pd.DataFrame, *, class_names: Iterable[str] | None = None,
    manual_only: bool = False,
) -> MergeResult:
    """Copy ``class``, ``class_source``, ``confidence`` from ``labels`` into a copy of ``features``.

    Cells are keyed by (image, label, centroid): a label whose recorded centroid is not on the
    cell of that label goes to the cell at its place (re-segmented smear) or nowhere (reported
    in ``moved``); an image where most labels lie on no cell is another smear of the same name
    and none of its labels are taken. Labels of images not in ``features`` are in ``missing``.
    Classes outside ``class_names`` raise a ``ValueError`` before anything changes.
    """
    labels = labels[labels[CLASS_SOURCE].astype(str) == MANUAL] if manual_only else labels
    labels = labels[~unlabeled_mask(labels[CLASS])].reset_index(drop=True)
    if class_names is not None:
        unknown = sorted(set(labels[CLASS].astype(str)) - set(map(str, class_names)))
        if unknown:
            raise ValueError(
                f"the labels use classes not in the current class set: {unknown}; add them to "
                "the class set first (nothing was imported)"
            )
    table = features.copy()
    for column in _CLASS_COLUMNS:
        if column not in table.columns:
            table[column] = np.nan if column == CONFIDENCE else None
        elif column != CONFIDENCE:
            table[column] = table[column].astype(object)
    rows, distance, exact = _locate(table, labels)
    loaded = labels[IMAGE].astype(str).isin(set(table[IMAGE].astype(str))).to_numpy()
    other_content = _changed_images(table, labels)
    rows[labels[IMAGE].astype(str).isin(other_content).to_numpy()] = -1
    other_smears = []
    for image in pd.unique(labels.loc[loaded, IMAGE].astype(str)):
        if image in other_content:
            continue
        mine = (labels[IMAGE].astype(str) == image).to_numpy()
        if mine.sum() >= 3 and (rows[mine] >= 0).mean() < 0.5:
            other_smears.append(image)
            rows[mine] = -1
    found = rows >= 0
    for column in _CLASS_COLUMNS:
        values = labels.loc[found, column].to_numpy()
        table.iloc[rows[found], table.columns.get_loc(column)] = values
    moved = labels.loc[~found & loaded].assign(distance=distance[~found & loaded])
    missing = labels.loc[~found & ~loaded].reset_index(drop=True)
    relocated = int((found & (rows != exact)).sum())
    return MergeResult(table, int(found.sum()), missing, moved.reset_index(drop=True), relocated,
                       other_smears, other_content)


def _changed_images(table: pd.DataFrame, labels: pd.DataFrame) -> list[str]:
    """Images whose content hash is known on both sides and differs: another photo saved
    under the same name, whatever the cells' layout (centroids may agree by chance)."""
    if IMAGE_SHA256 not in table.columns or IMAGE_SHA256 not in labels.columns:
        return []

    def hashes(df):
        known = df[df[IMAGE_SHA256].notna() & (df[IMAGE_SHA256].astype(str) != "")]
        return known.groupby(known[IMAGE].astype(str))[IMAGE_SHA256].agg(
            lambda values: set(values.astype(str)))

    ours, theirs = hashes(table), hashes(labels)
    return sorted(image for image in set(ours.index) & set(theirs.index)
                  if not theirs[image] & ours[image])


def import_labels(path, features: pd.DataFrame, **kwargs) -> MergeResult:
    """:func:`read_labels` then :func:`merge_labels` (``features`` itself is never modified)."""
    return merge_labels(features, read_labels(path), **kwargs)
