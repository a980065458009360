"""The labeled cells of Chula RBC-12 read back from a ``napari-reddino run`` output folder.

Why: held-out data is scored from what the CLI writes, not from in-process features. Reads
``RUN/cells.h5ad`` (the cell table in ``.obs``, its ``morph_*`` features in ``.X``, the embedding in
``.obsm["X_embedding"]``) and each smear's label image (``RUN/smears/NAME/grid.zarr``), matches
every labeled center to the segmented cell whose mask contains it, and builds each feature space
the way the CLI does (``space_matrix`` on all cells of the run, then the matched rows). The
generic descriptor baseline is measured on the run's masks and the source images (cached).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm

CACHE = Path("/tmp/reddino_real_cells") / "generic_from_run"


def _labels_image(run: Path, image_name: str):
    """The smear's label image and the source image path its marker records."""
    import zarr

    from napari_reddino.runs.pipeline import DONE_MARKER, GRID_FILE, smear_dir

    folder = smear_dir(run, image_name)
    marker = folder / DONE_MARKER
    if not marker.is_file():
        return None, None
    labels = np.asarray(zarr.open_group(str(folder / GRID_FILE), mode="r")["labels"][:])
    return labels, json.loads(marker.read_text()).get("source", "")


def match_centers(labels: np.ndarray, xs, ys) -> np.ndarray:
    """Label of the cell whose mask holds each center (0: none; a label image holds one at most)."""
    ys = np.clip(np.asarray(ys, dtype=np.int64), 0, labels.shape[0] - 1)
    xs = np.clip(np.asarray(xs, dtype=np.int64), 0, labels.shape[1] - 1)
    return labels[ys, xs].astype(np.int64)


def _generic(source: str, labels: np.ndarray, cell_ids: np.ndarray) -> np.ndarray:
    """Generic descriptor of ``cell_ids`` on the run's masks, cached by image + masks."""
    from real_cells_data import generic_descriptor
    from scipy import ndimage

    from napari_reddino.runs.pipeline import read_image

    key = hashlib.md5(labels.tobytes() + cell_ids.tobytes() + source.encode()).hexdigest()[:16]
    path = CACHE / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    objects = ndimage.find_objects(labels)
    boxes = [objects[i - 1] for i in cell_ids]
    out = generic_descriptor(read_image(source), labels, cell_ids, boxes)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out


def load_run(run_dir, labels_csv, *, morphology_weight: float | None = None, generic=True,
             log=print) -> dict:
    """Labeled cells matched in a run folder, with every feature space's rows for them.

    Returns ``cells`` (``labels.csv`` + ``cell`` label, ``row`` into the run's cells or -1,
    ``n_segmented``), ``spaces`` ({name: matrix of the matched cells}), ``feature_space`` (the
    run's, from ``summary.json``) and ``n_cells`` (segmented objects in the run).
    """
    from napari_reddino.explore.spaces import MORPHOLOGY_WEIGHT, space_matrix, standardize
    from napari_reddino.runs.anndata_io import obs_with_features, read_run

    run = Path(run_dir)
    adata = read_run(run)
    table = obs_with_features(adata)  # the morphology features live in .X
    vectors = np.asarray(adata.obsm[nm.X_EMBEDDING], np.float32)
    row_of = {(str(i), int(lab)): r for r, (i, lab) in
              enumerate(zip(table[nm.IMAGE].astype(str), table[nm.LABEL].astype(np.int64)))}
    labeled = pd.read_csv(labels_csv)
    parts, generic_rows = [], {}
    for k, (name, cells) in enumerate(labeled.groupby("image", sort=True)):
        cells = cells.reset_index(drop=True)
        labels, source = _labels_image(run, name)
        if labels is None:
            cells["cell"], cells["row"], cells["n_segmented"] = 0, -1, 0
            parts.append(cells)
            continue
        cells["cell"] = match_centers(labels, cells["x"], cells["y"])
        cells["row"] = [row_of.get((name, int(c)), -1) if c > 0 else -1 for c in cells["cell"]]
        cells["n_segmented"] = int(len(np.unique(labels)) - 1)
        if generic:
            ids = np.unique(cells.loc[cells["row"] >= 0, "cell"].to_numpy(np.int64))
            for cell, vector in zip(ids, _generic(source, labels, ids)):
                generic_rows[(name, int(cell))] = vector
        parts.append(cells)
        if k % 50 == 0:
            log(f"  {k + 1} smears matched")
    cells = pd.concat(parts, ignore_index=True)
    rows = cells.loc[cells["row"] >= 0, "row"].to_numpy(np.int64)
    weight = MORPHOLOGY_WEIGHT if morphology_weight is None else morphology_weight
    spaces = {space: space_matrix(table, vectors, space, row_column=None,
                                  morphology_weight=weight)[rows]
              for space in (nm.EMBEDDING, nm.MORPHOLOGY, nm.BOTH)}
    if generic:
        keys = zip(cells.loc[cells["row"] >= 0, "image"], cells.loc[cells["row"] >= 0, "cell"])
        spaces["generic"] = standardize(np.stack([generic_rows[(i, int(c))] for i, c in keys]))
    summary = run / "summary.json"
    space = json.loads(summary.read_text()).get("feature_space") if summary.is_file() else None
    return {"cells": cells, "spaces": spaces, "feature_space": space, "n_cells": len(table),
            "backbone": str(adata.uns.get(nm.UNS_BACKBONE, ""))}
