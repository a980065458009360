"""Cells as AnnData (``cells.h5ad``), so scanpy and the scverse read a run without this package.

Layout (names in :mod:`napari_reddino.names`; the why in :mod:`.scverse_layout`):

- ``.X``: the morphology features of each cell (float32, raw values in their units);
  ``.var`` says each one's ``unit``, ``family``, ``description`` and cell-table ``column``.
  One column per measure: the region table's ``area``/``perimeter``/... are not repeated in
  ``.obs``. ``sc.tl.rank_genes_groups(adata, "cluster")`` ranks them.
- ``.obsm["X_morphology"]``: the same features standardized as the project computes with
  (robust z-scores, softly saturated): ``sc.pp.neighbors(adata, use_rep="X_morphology")``.
- ``.obsm["X_embedding"]``: the backbone's cell vectors (row ``i`` = obs row ``i``).
- ``.obsm["X_<method>"]``: each 2-D map (``X_umap``, ``X_pca``, ``X_tsne``);
  ``.obsm["spatial"]``: each cell's centroid (x, y) in pixels of its own smear.
- ``.obs``: the rest of the cell table, ``obs_names`` = ``"<image>:<label>"``; ``image``,
  ``subject``, ``class``, ``class_source``, ``kind`` and ``cluster`` are categoricals, each
  colored one with ``uns["<column>_colors"]`` (the docks' colors).
- ``.uns``: ``backbone``, ``pooling``, ``projection``, ``morphology_features`` and
  ``reddino`` (how the space, neighbors, map and clusters were made).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.runs.run_files import check_run_files, new_stamp, read_summary

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

    from napari_reddino.runs import scverse_layout as layout

    table = table.reset_index(drop=True)
    obsm: dict[str, np.ndarray] = {}
    if vectors is not None:
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(vectors) != len(table):
            raise ValueError(f"{len(vectors)} vectors for {len(table)} cells")
        obsm[nm.X_EMBEDDING] = vectors
    morphology = morphology_columns(table)
    x, var = None, None
    drop = [nm.NAPARI_INDEX, nm.EMBEDDING_ROW]
    if morphology:
        x = table[morphology].to_numpy(dtype=np.float64)  # exact round trip to the table
        var = layout.feature_var(morphology)
        var["column"] = morphology
        obsm[nm.X_MORPHOLOGY] = layout.standardized(x)
        drop += morphology + [c for c, name in layout.REGION_DUPLICATES.items()
                              if f"morph_{name}" in morphology]
    coords = layout.spatial(table)
    if coords is not None:
        obsm[nm.OBSM_SPATIAL] = coords
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
    layout.categorical_cluster(obs)
    uns.update(layout.category_colors(obs))
    return ad.AnnData(X=x, obs=obs, var=var, obsm=obsm, uns=uns)


def obs_with_features(adata) -> pd.DataFrame:
    """``.obs`` with ``.X``'s morphology features as ``morph_*`` columns (what the spaces read)."""
    return _table_from_x(adata, adata.obs.reset_index(drop=True))


def _table_from_x(adata, table: pd.DataFrame) -> pd.DataFrame:
    """Put ``.X``'s features back as cell-table columns (and the region columns they repeat)."""
    from napari_reddino.runs import scverse_layout as layout

    if adata.X is None or adata.n_vars == 0:
        return table
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    if "column" in adata.var.columns:
        columns = [str(c) for c in adata.var["column"]]
    else:  # a scanpy-written file: feature names without the table's prefix
        columns = layout.feature_columns_of([str(v) for v in adata.var_names])
    restored = pd.DataFrame(x.astype(np.float64), columns=columns, index=table.index)
    table = pd.concat([table.drop(columns=[c for c in columns if c in table.columns]),
                       restored], axis=1)
    for column, name in layout.REGION_DUPLICATES.items():
        if column not in table.columns and f"morph_{name}" in table.columns:
            table[column] = table[f"morph_{name}"]
    return table


def from_anndata(adata) -> tuple[pd.DataFrame, object]:
    """``(cell table, CellEmbeddings or None)`` back from an AnnData written here.

    Categoricals become plain columns again, ``embedding_row`` points into the embeddings and
    each ``X_<method>`` map returns as ``<method>_0/1`` columns, except the run's own map
    (``uns["projection"]``), which returns as ``umap_0/1``, where the explorer and ``project``
    keep it whatever the method; ``.X``'s features return as ``morph_*``.
    """
    from napari_reddino.io.cell_table import CellEmbeddings

    table = adata.obs.reset_index(drop=True).copy()
    for column in table.columns:
        if isinstance(table[column].dtype, pd.CategoricalDtype):
            table[column] = table[column].astype(object).where(table[column].notna(), None)
    if nm.CLUSTER in table.columns:  # a categorical of "0", "1"... in the file
        table[nm.CLUSTER] = pd.to_numeric(table[nm.CLUSTER], errors="coerce").fillna(-1)
        table[nm.CLUSTER] = table[nm.CLUSTER].astype(np.int64)
    table = _table_from_x(adata, table)
    shown = str(adata.uns.get(nm.UNS_PROJECTION, ""))  # the run's map: where the explorer looks
    for method in nm.MAP_METHODS:
        key = nm.obsm_key(method)
        if key in adata.obsm:
            coords = np.asarray(adata.obsm[key], dtype=np.float32)
            columns = nm.UMAP if method == shown else nm.map_columns(method)
            table[columns[0]], table[columns[1]] = coords[:, 0], coords[:, 1]
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
    """Write ``adata`` to ``path`` (gzip-compressed), replacing it atomically.

    The HDF5 file is made in memory, then written as bytes: an HDF5 write that fails on disk
    (full, ``ulimit -f``) raises a RuntimeError instead of an OSError and leaves HDF5's file
    open, which crashes the process at exit.
    """
    import h5py

    try:
        from anndata.io import write_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import write_elem

    from napari_reddino.io.atomic import write_bytes

    path = Path(path)
    if path.suffix.lower() != ".h5ad":
        raise ValueError(f"AnnData files end in .h5ad, got '{path.name}'")
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        write_elem(handle, "/", adata, dataset_kwargs={"compression": "gzip"})
    write_bytes(path, buffer.getbuffer(), "AnnData file")
    return path


def read_h5ad(path: str | Path):
    """Read a ``.h5ad`` file; a clear error when it is missing or damaged."""
    import anndata as ad

    from napari_reddino.io.cell_table import damaged

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no AnnData file at {path}")
    try:
        return ad.read_h5ad(path)
    except Exception as exc:  # h5py: "truncated file", "file signature not found", ...
        raise damaged(path, exc, "write it again (for a run folder rerun `napari-reddino "
                      "project` on it)") from exc


def aligned_vectors(table: pd.DataFrame, embeddings, table_path, npz_path) -> np.ndarray:
    """The vector of each table row; a clear error when the ``.npz`` holds other cells."""
    if nm.EMBEDDING_ROW in table.columns:
        rows = table[nm.EMBEDDING_ROW].to_numpy(dtype=np.int64)
    else:
        rows = np.asarray(embeddings.rows_for(table[nm.IMAGE].to_numpy(),
                                              table[nm.LABEL].to_numpy()))
    if len(rows) and (rows.min() < 0 or rows.max() >= len(embeddings.vectors)):
        raise ValueError(f"{table_path}: embedding_row points outside {npz_path} (it holds other "
                         "cells); pass the embeddings.npz written with that table")
    wrong = (embeddings.image[rows] != table[nm.IMAGE].astype(str).to_numpy()) | (
        embeddings.label[rows] != table[nm.LABEL].to_numpy(dtype=np.int64))
    if wrong.any():
        example = table.loc[wrong, [nm.IMAGE, nm.LABEL]].head(3).to_records(index=False).tolist()
        raise ValueError(f"{npz_path} does not hold the embeddings of {table_path}: "
                         f"{int(wrong.sum())} of {len(rows)} cells (e.g. {example}) have another "
                         "(image, label) there; pass the embeddings.npz written with that table")
    return np.asarray(embeddings.vectors, dtype=np.float32)[rows]


def run_anndata(run_dir: str | Path):
    """The AnnData of a run folder's combined cells (``cells.parquet`` + ``embeddings.npz``),
    refused when the two were not written together."""
    from napari_reddino.io.cell_table import CellEmbeddings, load_table

    run_dir = Path(run_dir)
    table_path, npz_path = run_dir / nm.CELLS_TABLE_FILE, run_dir / nm.EMBEDDINGS_FILE
    stamp = check_run_files(run_dir, (nm.CELLS_TABLE_FILE, nm.EMBEDDINGS_FILE), strict=False)
    table = load_table(table_path)
    embeddings = CellEmbeddings.load(npz_path)
    vectors = aligned_vectors(table, embeddings, table_path, npz_path)
    summary = read_summary(run_dir)
    uns = {nm.UNS_REDDINO: _provenance(run_dir, summary, embeddings.backbone,
                                       embeddings.pooling)}
    if stamp:
        uns[nm.RUN_STAMP] = stamp
    return to_anndata(table, vectors, backbone=embeddings.backbone, pooling=embeddings.pooling,
                      projection=str(summary.get("projection", "")), extra_uns=uns)


def write_run_h5ad(run_dir: str | Path) -> Path:
    """Write ``RUN/cells.h5ad`` beside ``RUN/cells.parquet`` (with its stamp); returns its path."""
    return write_h5ad(run_anndata(run_dir), Path(run_dir) / nm.ANNDATA_FILE)


def read_run(path: str | Path):
    """The cells of a run as AnnData: a ``.h5ad`` file, or a run folder (its ``cells.h5ad``,
    else built from ``cells.parquet`` + ``embeddings.npz``) whose files agree."""
    path = Path(path)
    if path.is_dir():
        check_run_files(path)
        h5ad = path / nm.ANNDATA_FILE
        return read_h5ad(h5ad) if h5ad.is_file() else run_anndata(path)
    return read_h5ad(path)


def _provenance(folder: Path, summary: dict | None, backbone: str, pooling: str) -> dict:
    """``uns["reddino"]`` from the run's summary (the one being written, or on disk)."""
    from napari_reddino.runs.run_files import read_summary
    from napari_reddino.runs.scverse_layout import provenance

    summary = summary if summary is not None else read_summary(folder)
    return provenance(summary, backbone=backbone, pooling=pooling,
                      weights=str(summary.get("weights_identity", "")))


def write_run_cells(folder: str | Path, table: pd.DataFrame, embeddings, *,
                    projection: str = "", adata=None, summary: dict | None = None) -> str:
    """Write a run's ``cells.parquet``, ``embeddings.npz`` and ``cells.h5ad`` with one new
    stamp, all or none (a failure leaves the previous three); returns the stamp.

    ``adata`` is written as ``cells.h5ad`` when given (its ``.uns`` gets the stamp), else the
    AnnData of ``table`` and ``embeddings``.
    """
    from napari_reddino.io.atomic import replacing_all
    from napari_reddino.io.cell_table import save_table

    folder = Path(folder)
    stamp = new_stamp()
    if adata is None:
        vectors, backbone, pooling = None, "", ""
        if embeddings is not None:
            paths = (folder / nm.CELLS_TABLE_FILE, folder / nm.EMBEDDINGS_FILE)
            vectors = aligned_vectors(table, embeddings, *paths)
            backbone, pooling = embeddings.backbone, embeddings.pooling
        adata = to_anndata(table, vectors, backbone=backbone, pooling=pooling,
                           projection=projection,
                           extra_uns={nm.UNS_REDDINO: _provenance(folder, summary, backbone,
                                                                  pooling)})
    adata.uns[nm.RUN_STAMP] = stamp
    targets = {folder / nm.CELLS_TABLE_FILE: "cell table", folder / nm.ANNDATA_FILE: "AnnData"}
    if embeddings is not None:
        targets[folder / nm.EMBEDDINGS_FILE] = "cell embeddings"
    with replacing_all(targets) as tmp:
        save_table(table, tmp[folder / nm.CELLS_TABLE_FILE], stamp=stamp)
        if embeddings is not None:
            embeddings.save(tmp[folder / nm.EMBEDDINGS_FILE], stamp=stamp)
        write_h5ad(adata, tmp[folder / nm.ANNDATA_FILE])
    if embeddings is None:  # a matrix of other cells must not stay beside this table
        (folder / nm.EMBEDDINGS_FILE).unlink(missing_ok=True)
    return stamp


def write_run(adata, folder: str | Path) -> Path:
    """Write an AnnData as a run folder's combined files (``cells.h5ad``, ``cells.parquet``,
    ``embeddings.npz``, one new stamp), so the CLI's ``report`` and ``propagate`` read it;
    returns the folder. ``adata.uns`` gets the new stamp."""
    missing = [c for c in (nm.IMAGE, nm.LABEL) if c not in adata.obs.columns]
    if missing:
        raise ValueError(f"write_run needs .obs columns {missing} (the image and label of each "
                         f"cell, keys of the run's cells); .obs has {list(adata.obs.columns)}")
    table, embeddings = from_anndata(adata)
    write_run_cells(folder, table, embeddings, adata=adata)
    return Path(folder)
