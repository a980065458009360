"""Small combined run files made without a backbone: seeded cells with 8-d vectors in two
clusters, some labeled by hand, written as a run writes them (stamped) or as older runs did."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.io.cell_table import CellEmbeddings


def cells(n: int = 24, seed: int = 0, image: str = "a.png") -> tuple[pd.DataFrame, CellEmbeddings]:
    """``(table, embeddings)``: two groups of cells, the first two of each labeled manually."""
    rng = np.random.default_rng(seed)
    labels = np.arange(1, n + 1, dtype=np.int64)
    group = labels > n // 2
    vectors = rng.standard_normal((n, 8)).astype(np.float32) + 6.0 * group[:, None]
    table = pd.DataFrame({
        nm.LABEL: labels, nm.IMAGE: image, nm.SUBJECT: np.where(labels % 2, "s1", "s2"),
        nm.CENTROID_Y: 10.0 * labels, nm.CENTROID_X: 7.0 * labels, nm.AREA: 50.0 + labels,
        nm.EMBEDDING_ROW: np.arange(n, dtype=np.int64),
    })
    classes = np.full(n, None, dtype=object)
    classes[[0, 1]] = "discocyte"
    classes[[n - 1, n - 2]] = "echinocyte"
    table[nm.CLASS] = classes
    table[nm.CLASS_SOURCE] = np.where(pd.isna(classes), None, "manual")
    table[nm.CONFIDENCE] = np.where(pd.isna(classes), np.nan, 1.0)
    embeddings = CellEmbeddings(vectors, [image] * n, labels, "fake", "cls_crop")
    return table, embeddings


def stamped_run(folder: Path, seed: int = 0) -> Path:
    """A run folder's three cell files written together (one stamp)."""
    from napari_reddino.runs.anndata_io import write_run_cells

    table, embeddings = cells(seed=seed)
    write_run_cells(folder, table, embeddings, projection="pca")
    return folder


def manual_labels(folder: Path) -> list:
    """The (label, class) pairs of the manual labels in ``folder/cells.parquet``."""
    table = pd.read_parquet(folder / nm.CELLS_TABLE_FILE)
    manual = table[table[nm.CLASS_SOURCE] == "manual"]
    return sorted(zip(manual[nm.LABEL].tolist(), manual[nm.CLASS].tolist()))
