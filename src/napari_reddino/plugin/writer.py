"""npe2 writers: cell layers out of napari, in the formats the readers and the CLI read back.

- ``.h5ad`` (one Labels layer): its cell table and embeddings as AnnData (:mod:`anndata_io`).
- a **run folder** (Labels layers, with their images when selected too): one smear folder per
  Labels layer (``smears/<image>/``: labels in ``grid.zarr``, ``cells.parquet``,
  ``embeddings.npz``, ``_SUCCESS``), the images under ``images/``, and the combined
  ``cells.parquet``, ``embeddings.npz`` and ``cells.h5ad``: ``viewer.open(folder)`` brings back
  the same layers, ``napari-reddino report/propagate`` work on it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from napari_reddino import names as nm


def _cells_of(features: pd.DataFrame, metadata: dict) -> tuple[pd.DataFrame, Any]:
    """A layer's cell table (napari's ``index`` dropped, ``image`` filled) and embeddings
    reduced to the table's rows, or None when the layer has none."""
    table = pd.DataFrame(features).drop(columns=[nm.NAPARI_INDEX], errors="ignore")
    if nm.LABEL not in table.columns:
        raise ValueError("this Labels layer has no cell table (no 'label' feature): segment it")
    table = table.reset_index(drop=True)
    if nm.IMAGE not in table.columns:
        table[nm.IMAGE] = str(metadata.get(nm.META_IMAGE, "image"))
    if nm.SUBJECT not in table.columns:
        table[nm.SUBJECT] = str(metadata.get(nm.META_SUBJECT, "unknown"))
    embeddings = metadata.get(nm.EMBEDDINGS_KEY)
    if embeddings is None or not hasattr(embeddings, "rows_for"):
        return table.drop(columns=[nm.EMBEDDING_ROW], errors="ignore"), None
    from napari_reddino.plugin.layers import smear_cells

    return smear_cells(table, embeddings)


def write_h5ad_layer(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer: a Labels layer's cells as ``.h5ad``."""
    from napari_reddino.runs.anndata_io import to_anndata, write_h5ad

    table, embeddings = _cells_of(meta.get("features", pd.DataFrame()), meta.get("metadata", {}))
    vectors = None if embeddings is None else embeddings.vectors
    adata = to_anndata(table, vectors, backbone=getattr(embeddings, "backbone", ""),
                       pooling=getattr(embeddings, "pooling", ""))
    return [str(write_h5ad(adata, path))]


def _image_file_name(image_name: str) -> str:
    """The file name under ``images/``: a layer's image name is any text (``../x.png``, an
    absolute path), so it is made safe (:func:`~napari_reddino.io.smear_files.safe_name`) and
    can never lead outside the run folder."""
    from napari_reddino.io.smear_files import IMAGE_SUFFIXES, safe_name

    suffix = Path(image_name).suffix
    if suffix.lower() not in IMAGE_SUFFIXES:
        return f"{safe_name(image_name)}.png"
    return safe_name(image_name[: -len(suffix)]) + suffix.lower()


def _write_image(folder: Path, image_name: str, data: Any) -> str:
    """The smear photo under ``images/`` (lossless: PNG, or TIFF for non-uint8); relative path."""
    import imageio.v3 as iio
    import tifffile

    name = _image_file_name(image_name)
    image = np.asarray(data)
    if image.dtype != np.uint8 or Path(name).suffix.lower() in (".jpg", ".jpeg"):
        name = f"{Path(name).stem}.tif" if image.dtype != np.uint8 else f"{Path(name).stem}.png"
    path = folder / "images" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tif":
        tifffile.imwrite(path, image)
    else:
        iio.imwrite(path, image)
    return str(Path("images") / name)


def _write_smear(run: Path, labels: np.ndarray, table: pd.DataFrame, embeddings, *,
                 image_name: str, subject: str, source: str, corrected: bool = False) -> None:
    import zarr

    from napari_reddino.io.atomic import write_text
    from napari_reddino.io.cell_table import save_table
    from napari_reddino.runs.pipeline import DONE_MARKER, GRID_FILE, smear_dir

    folder = smear_dir(run, image_name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / DONE_MARKER).unlink(missing_ok=True)
    group = zarr.open_group(str(folder / GRID_FILE), mode="w")
    group.create_array("labels", data=np.asarray(labels, dtype=np.int32), chunks=(1024, 1024))
    group.attrs.update({"image": image_name})
    save_table(table, folder / nm.CELLS_TABLE_FILE)
    if embeddings is not None:
        embeddings.save(folder / nm.EMBEDDINGS_FILE)
    marker = {"image": image_name, "subject": subject, "source": source,
              "n_cells": len(table), "config": {"written_by": "napari"}, "corrected": corrected,
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_text(folder / DONE_MARKER, json.dumps(marker, indent=1), "done marker")


def write_run_folder(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 multi-layer writer: Labels layers (+ their images) as a run folder."""
    from napari_reddino.io.cell_table import CellEmbeddings, concat_tables
    from napari_reddino.runs.anndata_io import write_run_cells

    run = Path(path)
    run.mkdir(parents=True, exist_ok=True)
    images = {meta.get("name"): data for data, meta, kind in layer_data if kind == "image"}
    tables, parts, offset, written = [], [], 0, []
    for data, meta, kind in layer_data:
        if kind != "labels" or nm.LABEL not in pd.DataFrame(meta.get("features")).columns:
            continue
        metadata = meta.get("metadata", {})
        table, embeddings = _cells_of(meta["features"], metadata)
        image_name = str(metadata.get(nm.META_IMAGE) or meta.get("name"))
        subject = str(metadata.get(nm.META_SUBJECT) or "unknown")
        table[nm.IMAGE], table[nm.SUBJECT] = image_name, subject
        image_layer = metadata.get(nm.META_IMAGE_LAYER)
        source = ""
        if image_layer in images:
            source = _write_image(run, image_name, images[image_layer])
        _write_smear(run, data, table, embeddings, image_name=image_name, subject=subject,
                     source=source, corrected=bool(metadata.get(nm.META_CORRECTED)))
        pooled = table.copy()
        if embeddings is not None:
            pooled[nm.EMBEDDING_ROW] = pooled[nm.EMBEDDING_ROW] + offset
            offset += len(embeddings)
            parts.append(embeddings)
        tables.append(pooled)
        written.append(image_name)
    if not tables:
        raise ValueError("no Labels layer with a cell table to write")
    # the run's three cell files with one stamp, all or none (an old matrix never stays)
    embeddings = CellEmbeddings.concat(parts) if len(parts) == len(tables) else None
    write_run_cells(run, concat_tables(tables), embeddings)
    return [str(run)]
