"""npe2 readers: what ``napari-reddino run`` (or the folder writer) leaves, opened in napari.

- a **run folder** (``RUN/smears/<image>/_SUCCESS`` ...; the combined ``cells.parquet`` and
  ``embeddings.npz`` when present): per smear the image (when its file is still where the run
  read it) and a Labels layer whose ``features`` are the combined rows of that smear (map,
  clusters, classes) with the embeddings attached: where the docks left off. No overlay is
  made while opening (20 smears stay 40 layers): the cell colours come from the embedding
  dock's "Colour cells of all open smears", and the patch-token PCA stays on disk
  (``grid.zarr``) for :func:`patch_overlay_data` to make when asked.
- a **smear folder** (``RUN/smears/<image>``): the same for one smear, from its own table.
- **embeddings** ``.npz``: inside a run/smear folder, that folder; ``<stem>.reddino.npz``
  beside ``<stem>_labels.tif`` + ``<stem>_cells.csv`` (``napari-reddino segment``): those.
- **AnnData** ``.h5ad``: in a run folder, the run with the h5ad's table; elsewhere one Points
  layer per image at the cell centers, ``features`` = ``.obs``.

No Qt here; layers are built by :mod:`napari_reddino.plugin.layers`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.plugin.layers import image_layer_data, labels_layer_data, overlay_layer_data
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    GRID_FILE,
    IMAGE_SUFFIXES,
    read_image,
    smear_dir,
)
from napari_reddino.runs.run_files import smear_source

SMEARS = "smears"  # pipeline.smear_dir puts each smear's folder here


def is_smear_folder(path: Path) -> bool:
    return path.is_dir() and (path / DONE_MARKER).is_file() and (path / GRID_FILE).is_dir()


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and (path / SMEARS).is_dir() and any(
        is_smear_folder(p) for p in (path / SMEARS).iterdir())


def _one_path(path) -> Path | None:
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return Path(os.fspath(path))


def get_reader(path) -> Callable[[str], list] | None:
    """npe2 ``get_reader``: a reader function for our folders and files, else None."""
    path = _one_path(path)
    if path is None:
        return None
    if is_run_folder(path):
        return read_run_layers
    if is_smear_folder(path):
        return read_smear_layers
    suffix = path.suffix.lower()
    if suffix == ".npz" and _npz_target(path) is not None:
        return read_npz_layers
    if suffix == ".h5ad" and path.is_file():
        return read_h5ad_layers
    return None


# -- run and smear folders -----------------------------------------------------------------------
def _marker(folder: Path) -> dict:
    return json.loads((folder / DONE_MARKER).read_text())


def _smear_layers(folder: Path, table: pd.DataFrame | None = None, embeddings=None) -> list:
    """Image (when found) and cells of one smear folder; the overlay is made on demand."""
    import zarr

    from napari_reddino.io.cell_table import CellEmbeddings, load_table

    marker = _marker(folder)
    group = zarr.open_group(str(folder / GRID_FILE), mode="r")
    image_name = str(marker.get("image") or group.attrs.get("image") or folder.name)
    subject = str(marker.get("subject") or "unknown")
    layer_name = Path(image_name).stem
    labels = np.asarray(group["labels"][:])
    if table is None:
        table = load_table(folder / nm.CELLS_TABLE_FILE)
        npz = folder / nm.EMBEDDINGS_FILE
        embeddings = CellEmbeddings.load(npz) if npz.is_file() else None
    out = []
    image_path = smear_source(folder, marker)
    if image_path is not None:
        out.append(image_layer_data(read_image(image_path), name=layer_name,
                                    image_name=image_name, subject=subject,
                                    metadata={"source": str(image_path)}))
    meta = {nm.META_RUN: str(folder.parent.parent), nm.META_METHOD:
            marker.get("config", {}).get("method", "")}
    out.append(labels_layer_data(labels, table, embeddings, image_name=image_name,
                                 image_layer=layer_name, subject=subject, metadata=meta))
    return out


def patch_overlay_data(metadata: dict, scale=None, translate=None):
    """The patch-token PCA overlay of a smear read from a run or smear folder, made on demand
    from the grid its folder kept (``metadata`` of its Labels layer, placed with that layer's
    ``scale`` / ``translate``); None when the layer has no folder or the grid was not kept."""
    import zarr

    run, image = metadata.get(nm.META_RUN), metadata.get(nm.META_IMAGE)
    if not run or image is None:
        return None
    folder = smear_dir(run, str(image))
    if not is_smear_folder(folder):
        return None
    group = zarr.open_group(str(folder / GRID_FILE), mode="r")
    if "grid" not in group:
        return None
    marker = _marker(folder)
    patch = int(marker.get("patch_size") or group.attrs.get("patch_size"))
    layer_name = str(metadata.get(nm.META_IMAGE_LAYER) or Path(str(image)).stem)
    return overlay_layer_data(np.asarray(group["grid"][:]), patch,
                              labels=np.asarray(group["labels"][:]), image_layer=layer_name,
                              scale=scale, translate=translate, visible=True,
                              backbone=str(marker.get("config", {}).get("backbone", "")))


def _extent(layer_data) -> np.ndarray:
    """(height, width) a layer covers in world units (its scale respected)."""
    data, kwargs, kind = layer_data
    if kind == "points":
        size = np.asarray(data, float).max(axis=0)[-2:] + 1 if len(data) else np.ones(2)
    else:
        size = np.asarray(np.shape(data)[:2], float)
    return size * np.asarray(kwargs.get("scale", (1.0, 1.0)), float)[-2:]


def side_by_side(groups: list[list], gap: float = 0.05) -> list:
    """The layers of several smears laid out on a grid instead of stacked at the origin.

    Each group (one smear's image and labels) moves as one by its world extent, so the labels
    stay on their image (an overlay made later follows its Labels layer's ``translate``) and a
    pixel size set as ``scale`` is respected.
    """
    if len(groups) < 2:
        return [layer for group in groups for layer in group]
    step = max(_extent(layer).max() for group in groups for layer in group) * (1 + gap)
    columns = int(np.ceil(np.sqrt(len(groups))))
    out = []
    for index, group in enumerate(groups):
        offset = np.array([index // columns, index % columns], float) * step
        for data, kwargs, kind in group:
            shift = np.asarray(kwargs.get("translate", (0.0, 0.0)), float)[-2:] + offset
            out.append((data, {**kwargs, "translate": tuple(float(v) for v in shift)}, kind))
    return out


def _smear_folders(run_dir: Path) -> list[Path]:
    return sorted(p for p in (run_dir / SMEARS).iterdir() if is_smear_folder(p))


def read_run_layers(path, table: pd.DataFrame | None = None, embeddings=None) -> list:
    """Every finished smear of a run folder; cells from the combined table when there is one."""
    from napari_reddino.io.cell_table import CellEmbeddings, load_table
    from napari_reddino.runs.run_files import check_run_files

    run_dir = _one_path(path)
    check_run_files(run_dir)  # parquet, npz and h5ad written together, else say which differ
    pooled = run_dir / nm.CELLS_TABLE_FILE
    if table is None and pooled.is_file() and (run_dir / nm.EMBEDDINGS_FILE).is_file():
        table = load_table(pooled)
        embeddings = CellEmbeddings.load(run_dir / nm.EMBEDDINGS_FILE)
    groups = []
    for folder in _smear_folders(run_dir):
        own = table
        if table is not None:
            image = str(_marker(folder).get("image", folder.name))
            own = table if (table[nm.IMAGE].astype(str) == image).any() else None
        groups.append(_smear_layers(folder, own, embeddings if own is not None else None))
    return side_by_side(groups)  # not stacked at the origin


def read_smear_layers(path) -> list:
    """One smear folder, from its own table and embeddings."""
    return _smear_layers(_one_path(path))


# -- embeddings (.npz) and AnnData (.h5ad) -------------------------------------------------------
def _segment_outputs(npz: Path) -> tuple[Path, Path] | None:
    """``(labels.tif, cells.csv)`` of ``<stem>.reddino.npz`` (``napari-reddino segment``)."""
    stem = npz.name[: -len(".reddino.npz")] if npz.name.endswith(".reddino.npz") else npz.stem
    labels, table = npz.with_name(f"{stem}_labels.tif"), npz.with_name(f"{stem}_cells.csv")
    return (labels, table) if labels.is_file() and table.is_file() else None


def _npz_target(npz: Path) -> Path | tuple | None:
    if not npz.is_file():
        return None
    if is_smear_folder(npz.parent) or is_run_folder(npz.parent):
        return npz.parent
    return _segment_outputs(npz)


def read_npz_layers(path) -> list:
    """Embeddings: their run/smear folder, or the segment command's labels + table beside."""
    import tifffile

    from napari_reddino.io.cell_table import CellEmbeddings, load_table

    npz = _one_path(path)
    target = _npz_target(npz)
    if isinstance(target, Path):
        return read_run_layers(target) if is_run_folder(target) else read_smear_layers(target)
    if target is None:
        raise ValueError(f"{npz}: no cell table or labels beside these embeddings")
    labels_path, table_path = target
    table = load_table(table_path)
    embeddings = CellEmbeddings.load(npz)
    image_name = str(table[nm.IMAGE].iloc[0]) if len(table) else labels_path.stem
    subject = str(table[nm.SUBJECT].iloc[0]) if len(table) else "unknown"
    layer_name = Path(image_name).stem
    out = []
    photos = [npz.with_name(f"{layer_name}{s}") for s in IMAGE_SUFFIXES]
    photo = next((p for p in photos if p.is_file()), None)
    if photo is not None:
        out.append(image_layer_data(read_image(photo), name=layer_name, image_name=image_name,
                                    subject=subject))
    out.append(labels_layer_data(tifffile.imread(labels_path), table, embeddings,
                                 image_name=image_name, image_layer=layer_name, subject=subject))
    return out


def read_h5ad_layers(path) -> list:
    """AnnData: inside a run folder, the run with its table; else cell centers as Points."""
    from napari_reddino.runs.anndata_io import from_anndata, read_h5ad

    h5ad = _one_path(path)
    table, embeddings = from_anndata(read_h5ad(h5ad))
    if is_run_folder(h5ad.parent):
        return read_run_layers(h5ad.parent, table, embeddings)
    groups = []
    for image, cells in table.groupby(nm.IMAGE, sort=True, observed=True):
        cells = cells.reset_index(drop=True)
        meta = {nm.META_IMAGE: str(image)}
        if embeddings is not None:
            rows = cells[nm.EMBEDDING_ROW].to_numpy()
            meta[nm.EMBEDDINGS_KEY] = embeddings.vectors[rows]
            cells[nm.EMBEDDING_ROW] = np.arange(len(cells))
        coords = cells[[nm.CENTROID_Y, nm.CENTROID_X]].to_numpy(dtype=float)
        groups.append([(coords, {"name": f"{Path(str(image)).stem} cells",
                                 "features": cells, "metadata": meta, "size": 8}, "points")])
    return side_by_side(groups)
