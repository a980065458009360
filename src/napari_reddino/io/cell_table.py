"""The cell table (one row per segmented cell, keyed by ``(image, label)``) and cell embeddings.

Column names live once in :mod:`napari_reddino.names` (re-exported here). Region features come from
skimage's ``regionprops_table``; many images' tables are concatenated; io is csv or parquet with a
schema check. :class:`CellEmbeddings` is the N x D matrix that travels beside the table (``.npz``).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from skimage.measure import regionprops_table

from napari_reddino.io.atomic import replacing, write_npz
from napari_reddino.names import (  # noqa: F401  (re-exported: modules import the names from here too)
    AREA,
    CENTROID_X,
    CENTROID_Y,
    CLASS,
    CLASS_SOURCE,
    CLUSTER,
    CONFIDENCE,
    ECCENTRICITY,
    EMBEDDING_ROW,
    IMAGE,
    KIND,
    LABEL,
    MEAN_RGB,
    PERIMETER,
    RUN_STAMP,
    SOLIDITY,
    SUBJECT,
    TOUCHES_BORDER,
    UMAP,
)

#: Columns every cell table has (what ``region_features`` writes), in order.
REGION_COLUMNS = (LABEL, IMAGE, SUBJECT, CENTROID_Y, CENTROID_X, AREA, PERIMETER, ECCENTRICITY,
                  SOLIDITY, *MEAN_RGB)
#: The minimum a saved/loaded/concatenated table must hold to be a cell table.
KEY_COLUMNS = (LABEL, IMAGE)
REQUIRED_COLUMNS = (LABEL, IMAGE, SUBJECT, CENTROID_Y, CENTROID_X, AREA)

_PROPS = ("label", "centroid", "area", "perimeter", "eccentricity", "solidity", "intensity_mean")
_TABLE_SUFFIXES = (".csv", ".parquet")
DAMAGED_TABLE_FIX = ("restore it from a backup, or for a run folder move it away and rerun "
                     "`napari-reddino project` on the run (labels that were only in it are lost)")


def unlabeled_mask(classes) -> np.ndarray:
    """True where ``classes`` holds no label (``None``, NaN or an empty / blank string)."""
    values = np.asarray(classes, dtype=object)
    missing = pd.isna(values)
    present = np.flatnonzero(~missing)
    blank = [isinstance(v, str) and not v.strip() for v in values[present]]
    missing[present[np.asarray(blank, dtype=bool)]] = True
    return missing


def empty_table() -> pd.DataFrame:
    """A cell table with no rows but the right columns and dtypes."""
    columns = {name: pd.Series(dtype=float) for name in REGION_COLUMNS}
    columns[LABEL] = pd.Series(dtype=np.int64)
    columns[IMAGE] = pd.Series(dtype=str)
    columns[SUBJECT] = pd.Series(dtype=str)
    return pd.DataFrame(columns)[list(REGION_COLUMNS)]


def region_features(labels: np.ndarray, image: np.ndarray, *, image_name: str,
                    subject: str) -> pd.DataFrame:
    """Per-cell geometry and mean color of an instance label image (one row per label, sorted)."""
    labels = np.asarray(labels)
    image = np.asarray(image)
    if labels.ndim != 2:
        raise ValueError(f"labels must be 2D (H, W), got shape {labels.shape}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.shape[:2] != labels.shape or image.ndim != 3 or image.shape[2] < 3:
        raise ValueError(f"image {image.shape} must be (H, W, 3) matching labels {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if not labels.any():
        return empty_table()
    props = regionprops_table(labels, intensity_image=image[..., :3], properties=_PROPS)
    n = len(props["label"])
    table = pd.DataFrame({
        LABEL: props["label"].astype(np.int64),
        IMAGE: [str(image_name)] * n,
        SUBJECT: [str(subject)] * n,
        CENTROID_Y: props["centroid-0"],
        CENTROID_X: props["centroid-1"],
        AREA: props["area"].astype(float),
        PERIMETER: props["perimeter"],
        ECCENTRICITY: props["eccentricity"],
        SOLIDITY: props["solidity"],
    })
    for channel, name in enumerate(MEAN_RGB):
        table[name] = props[f"intensity_mean-{channel}"]
    return table


def check_table(df: pd.DataFrame, required: Sequence[str] = REQUIRED_COLUMNS,
                what: str = "cell table") -> None:
    """Raise a ValueError naming missing columns or duplicate (image, label) keys."""
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ValueError(f"{what} is missing column(s) {missing}; it has {list(df.columns)}")
    if not pd.api.types.is_integer_dtype(df[LABEL]):
        raise ValueError(f"{what}: column '{LABEL}' must be integer, got {df[LABEL].dtype}")
    duplicated = df.duplicated(list(KEY_COLUMNS))
    if duplicated.any():
        keys = df.loc[duplicated, list(KEY_COLUMNS)].head(5).to_records(index=False).tolist()
        raise ValueError(f"{what} has duplicate (image, label) keys, e.g. {keys}")


def concat_tables(tables: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate the tables of many images into one; keys (image, label) must stay unique."""
    tables = list(tables)
    if not tables:
        return empty_table()
    for i, table in enumerate(tables):
        check_table(table, KEY_COLUMNS, what=f"table {i}")
    combined = pd.concat(tables, ignore_index=True)
    check_table(combined, KEY_COLUMNS, what="concatenated table")
    return combined


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _TABLE_SUFFIXES:
        raise ValueError(f"cell tables are .csv or .parquet files, got '{path.name}'")
    return suffix


def save_table(df: pd.DataFrame, path: str | Path, *, stamp: str | None = None) -> Path:
    """Write a cell table to ``.csv`` or ``.parquet`` (chosen by the suffix); returns the path.

    Written atomically (:mod:`.atomic`): a failed write leaves the previous file intact.
    ``stamp`` (parquet only) goes into the schema metadata so that a run's files can be told
    apart from files written at another time (see ``runs.run_files``).
    """
    path = Path(path)
    suffix = _suffix(path)
    check_table(df, KEY_COLUMNS)
    with replacing(path, "cell table") as tmp:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(df, preserve_index=False)
            if stamp is not None:
                metadata = {**(table.schema.metadata or {}), RUN_STAMP.encode(): stamp.encode()}
                table = table.replace_schema_metadata(metadata)
            pq.write_table(table, tmp)
    return path


def damaged(path: Path, error: BaseException, fix: str) -> ValueError:
    """The error for a file that exists but cannot be read: which file, why, what to do."""
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ValueError(f"{path} is damaged (truncated, or not a {path.suffix} file: "
                      f"{detail}); {fix}")


def load_table(path: str | Path, required: Sequence[str] = REQUIRED_COLUMNS) -> pd.DataFrame:
    """Read a cell table written by :func:`save_table` (or any tool) and check its schema."""
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no cell table at {path}")
    try:
        if suffix == ".csv":
            df = pd.read_csv(path, dtype={IMAGE: str, SUBJECT: str})
        else:
            df = pd.read_parquet(path)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise damaged(path, exc, DAMAGED_TABLE_FIX) from exc
    check_table(df, required, what=f"cell table {path.name}")
    return df


@dataclass
class CellEmbeddings:
    """N x D cell embeddings keyed by (image, label), with the backbone and pooling used."""

    vectors: np.ndarray
    image: np.ndarray
    label: np.ndarray
    backbone: str
    pooling: str

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors must be (N, D), got shape {self.vectors.shape}")
        self.image = np.asarray(self.image, dtype=str).reshape(-1)
        self.label = np.asarray(self.label, dtype=np.int64).reshape(-1)
        n = len(self.vectors)
        if len(self.image) != n or len(self.label) != n:
            raise ValueError(f"{n} vectors but {len(self.image)} image names and "
                             f"{len(self.label)} labels")
        self.backbone, self.pooling = str(self.backbone), str(self.pooling)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def dim(self) -> int:
        """Embedding dimension D."""
        return self.vectors.shape[1]

    def save(self, path: str | Path, *, stamp: str | None = None) -> Path:
        """Write to ``.npz`` atomically (no pickles); ``stamp`` as in :func:`save_table`."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise ValueError(f"cell embeddings are saved as .npz, got '{path.name}'")
        extra = {} if stamp is None else {"stamp": np.array(str(stamp))}
        write_npz(path, "cell embeddings", vectors=self.vectors, image=self.image,
                  label=self.label, backbone=np.array(self.backbone),
                  pooling=np.array(self.pooling), **extra)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CellEmbeddings:
        """Read an ``.npz`` written by :meth:`save`; clear errors for missing file or arrays."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no cell embeddings at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                missing = [k for k in ("vectors", "image", "label", "backbone", "pooling")
                           if k not in data.files]
                if missing:
                    raise ValueError(f"{path} is not a cell-embeddings file: missing {missing}")
                return cls(data["vectors"], data["image"], data["label"], str(data["backbone"]),
                           str(data["pooling"]))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # truncated, damaged
            if str(exc).startswith(str(path)):
                raise
            raise damaged(path, exc, "embed the smear again, or for a run folder rerun "
                          "`napari-reddino project` on it") from exc

    @classmethod
    def concat(cls, parts: Sequence[CellEmbeddings]) -> CellEmbeddings:
        """Stack several images' embeddings; they must share backbone, pooling and dimension."""
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for part in parts[1:]:
            if (part.backbone, part.pooling, part.dim) != (first.backbone, first.pooling,
                                                           first.dim):
                raise ValueError(
                    f"cannot mix embeddings of {first.backbone}/{first.pooling}/D={first.dim} "
                    f"with {part.backbone}/{part.pooling}/D={part.dim}")
        return cls(np.concatenate([p.vectors for p in parts]),
                   np.concatenate([p.image for p in parts]),
                   np.concatenate([p.label for p in parts]), first.backbone, first.pooling)

    def rows_for(self, image, labels, *, strict: bool = False) -> np.ndarray:
        """Row index of each (image, label); -1 where absent, or KeyError if ``strict``.

        ``image`` is one image name for all ``labels``, or one name per label (the ``image``
        column of a table of many images).
        """
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        images = np.asarray(image, dtype=str).reshape(-1)
        if images.size == 1:
            images = np.repeat(images, len(labels))
        elif len(images) != len(labels):
            raise ValueError(f"{len(images)} image names for {len(labels)} labels")
        lookup = pd.Series(np.arange(len(self)), index=pd.MultiIndex.from_arrays(
            [self.image, self.label]))
        if lookup.index.has_duplicates:
            raise ValueError("these embeddings hold duplicate (image, label) keys")
        wanted = pd.MultiIndex.from_arrays([images, labels])
        rows = lookup.reindex(wanted).to_numpy(dtype=float, na_value=np.nan)
        missing = np.isnan(rows)
        if strict and missing.any():
            keys = list(zip(images[missing][:5].tolist(), labels[missing][:5].tolist()))
            raise KeyError(f"no embedding for (image, label) {keys}")
        return np.where(missing, -1, np.nan_to_num(rows, nan=-1)).astype(np.int64)
