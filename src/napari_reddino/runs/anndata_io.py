"""Cells as AnnData (``cells.h5ad``), so scanpy and the scverse read a run without this package.

Layout (names in :mod:`napari_reddino.names`):

- ``.obs``: the cell table, one row per cell, ``obs_names`` = ``"<image>:<label>"``; ``image``,
  ``subject``, ``class``, ``class_source`` and ``kind`` are categoricals.
- ``.obsm["X_embedding"]``: the backbone's cell vectors (float32, row ``i`` = obs row ``i``).
- ``.obsm["X_morphology"]``: the morphology numbers of each cell, their names in
  ``.uns["morphology_features"]`` (the columns stay in ``.obs`` too, to read them by name).
- ``.obsm["X_<method>"]``: each 2-D map of the table (``X_umap``, ``X_pca``, ``X_tsne``).
- ``.uns``: ``backbone``, ``pooling``, ``projection`` and ``class_colors`` (scanpy's
  ``<column>_colors``: one color per category of ``obs["class"]``).

``.X`` stays empty: the cells have several representations and none is *the* data; scanpy takes
one with ``use_rep="X_embedding"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm

#: Morphology numbers every cell table has (region features), used when no richer set exists.
BASIC_MORPHOLOGY = (nm.AREA, nm.PERIMETER, nm.ECCENTRICITY, nm.SOLIDITY, *nm.MEAN_RGB)


def morphology_columns(table: pd.DataFrame) -> list[str]:
    """The table's numeric morphology columns: those :mod:`..morphology.features` registers
    when it exists and the table has them, else the basic region features."""
    registered: Sequence[str] = ()
    try:
        from napari_reddino.morphology import features as morphology
    except ImportError:
        morphology = None
    if morphology is not None and callable(getattr(morphology, "feature_columns", None)):
        registered = morphology.feature_columns(table.columns)
    elif morphology is not None:
        found = getattr(morphology, "FEATURES", ())
        registered = [getattr(f, "column", getattr(f, "name", f)) for f in found]
    chosen = [c for c in registered if c in table.columns]
    if not chosen:
        chosen = [c for c in BASIC_MORPHOLOGY if c in table.columns]
    return [c for c in chosen if pd.api.types.is_numeric_dtype(table[c])]


def _class_colors(categories: Sequence[str]) -> list[str]:
    """A color per class: from a known class set when it holds them all, else a palette."""
    from napari_reddino.label.classes import CLASS_SETS, default_colors

    for class_set in CLASS_SETS.values():
        if all(c in class_set for c in categories):
            return [class_set.color_of(c) for c in categories]
    return default_colors(len(categories))


def _obs(table: pd.DataFrame, drop: Sequence[str]) -> pd.DataFrame:
    """The table as ``.obs``: string keys, categoricals, objects made h5ad-writable."""
    obs = table.drop(columns=[c for c in drop if c in table.columns]).reset_index(drop=True)
    for column in obs.columns:
        series = obs[column]
        if column in nm.CATEGORICAL_COLUMNS or not (
            pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        ):
            values = series.astype(object).where(series.notna(), None)
            obs[column] = pd.Categorical([None if v is None else str(v) for v in values])
    obs.index = pd.Index(
        [f"{i}:{lab}" for i, lab in zip(table[nm.IMAGE].astype(str), table[nm.LABEL])], dtype=str
    )
    return obs


def to_anndata(table: pd.DataFrame, vectors: np.ndarray | None = None, *, backbone: str = "",
               pooling: str = "", projection: str = "", extra_uns: dict | None = None):
    """An AnnData of ``table`` (+ its vectors, row-aligned) in the layout above."""
    import anndata as ad

    table = table.reset_index(drop=True)
    obsm: dict[str, np.ndarray] = {}
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(table):
            raise ValueError(f"{len(vectors)} vectors for {len(table)} cells")
        obsm[nm.X_EMBEDDING] = vectors
    morphology = morphology_columns(table)
    if morphology:
        obsm[nm.X_MORPHOLOGY] = table[morphology].to_numpy(dtype=np.float32)
    drop = [nm.NAPARI_INDEX, nm.EMBEDDING_ROW]
    for method in nm.MAP_METHODS:
        columns = nm.map_columns(method)
        if set(columns) <= set(table.columns):
            # the legacy umap_0/1 hold whatever map the run made: name it after that method
            key = projection if method == nm.UMAP_METHOD and projection else method
            obsm[nm.obsm_key(key)] = table[list(columns)].to_numpy(dtype=np.float32)
            drop += columns
    uns = {nm.UNS_BACKBONE: str(backbone), nm.UNS_POOLING: str(pooling),
           nm.UNS_MORPHOLOGY_FEATURES: list(morphology), **(extra_uns or {})}
    if projection:
        uns[nm.UNS_PROJECTION] = str(projection)
    obs = _obs(table, drop)
    if nm.CLASS in obs.columns and len(obs[nm.CLASS].cat.categories):
        uns[nm.UNS_CLASS_COLORS] = _class_colors(list(obs[nm.CLASS].cat.categories))
    return ad.AnnData(obs=obs, obsm=obsm, uns=uns)


def from_anndata(adata) -> tuple[pd.DataFrame, object]:
    """``(cell table, CellEmbeddings or None)`` back from an AnnData written here.

    Categoricals become plain columns again, ``embedding_row`` points into the embeddings and
    each ``X_<method>`` map returns as ``<method>_0/1`` columns (``X_umap`` as ``umap_0/1``).
    """
    from napari_reddino.io.cell_table import CellEmbeddings

    table = adata.obs.reset_index(drop=True).copy()
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype(object).where(table[column].notna(), None)
    for method in nm.MAP_METHODS:
        key = nm.obsm_key(method)
        if key in adata.obsm:
            coords = np.asarray(adata.obsm[key], dtype=np.float32)
            table[nm.map_columns(method)[0]] = coords[:, 0]
            table[nm.map_columns(method)[1]] = coords[:, 1]
    if nm.LABEL in table.columns:
        table[nm.LABEL] = table[nm.LABEL].astype(np.int64)
    if nm.X_EMBEDDING not in adata.obsm:
        return table, None
    embeddings = CellEmbeddings(
        np.asarray(adata.obsm[nm.X_EMBEDDING]), table[nm.IMAGE].astype(str).to_numpy(),
        table[nm.LABEL].to_numpy(), str(adata.uns.get(nm.UNS_BACKBONE, "")),
        str(adata.uns.get(nm.UNS_POOLING, "")))
    table[nm.EMBEDDING_ROW] = np.arange(len(table), dtype=np.int64)
    return table, embeddings


def write_h5ad(adata, path: str | Path) -> Path:
    """Write ``adata`` to ``path`` (gzip-compressed), replacing it atomically."""
    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        raise ValueError(f"AnnData files end in .h5ad, got '{path.name}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    adata.write_h5ad(tmp, compression="gzip")
    tmp.replace(path)
    return path


def read_h5ad(path: str | Path):
    """Read a ``.h5ad`` file; a clear error when it is missing."""
    import anndata as ad

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no AnnData file at {path}")
    return ad.read_h5ad(path)


def run_anndata(run_dir: str | Path):
    """The AnnData of a run folder's combined cells (``cells.parquet`` + ``embeddings.npz``)."""
    from napari_reddino.io.cell_table import CellEmbeddings, load_table
    from napari_reddino.runs.combine import read_summary

    run_dir = Path(run_dir)
    table = load_table(run_dir / nm.CELLS_TABLE_FILE)
    embeddings = CellEmbeddings.load(run_dir / nm.EMBEDDINGS_FILE)
    if nm.EMBEDDING_ROW in table.columns:
        rows = table[nm.EMBEDDING_ROW].to_numpy(dtype=np.int64)
    else:
        rows = embeddings.rows_for(table[nm.IMAGE].to_numpy(), table[nm.LABEL].to_numpy(),
                                   strict=True)
    summary = read_summary(run_dir)
    return to_anndata(table, embeddings.vectors[rows], backbone=embeddings.backbone,
                      pooling=embeddings.pooling, projection=str(summary.get("projection", "")))


def write_run_h5ad(run_dir: str | Path) -> Path:
    """Write ``RUN/cells.h5ad`` beside ``RUN/cells.parquet``; returns its path."""
    return write_h5ad(run_anndata(run_dir), Path(run_dir) / nm.ANNDATA_FILE)


def read_run(path: str | Path):
    """The cells of a run as AnnData: a ``.h5ad`` file, or a run folder (its ``cells.h5ad``,
    else built from ``cells.parquet`` + ``embeddings.npz``)."""
    path = Path(path)
    if path.is_dir():
        h5ad = path / nm.ANNDATA_FILE
        return read_h5ad(h5ad) if h5ad.is_file() else run_anndata(path)
    return read_h5ad(path)


def write_run(adata, folder: str | Path) -> Path:
    """Write an AnnData as a run folder's combined files (``cells.h5ad``, ``cells.parquet``,
    ``embeddings.npz``), so the CLI's ``report`` and ``propagate`` read it; returns the folder."""
    from napari_reddino.io.cell_table import save_table

    folder = Path(folder)
    table, embeddings = from_anndata(adata)
    save_table(table, folder / nm.CELLS_TABLE_FILE)
    if embeddings is not None:
        embeddings.save(folder / nm.EMBEDDINGS_FILE)
    write_h5ad(adata, folder / nm.ANNDATA_FILE)
    return folder
