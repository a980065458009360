"""Put cells that appeared after a map was made onto it, without moving the others.

After a hand correction a few cells are new or reshaped; running UMAP again would move every
point the user has learnt to read. Each such cell is placed at the mean map position of its
nearest mapped neighbors in the feature space, as UMAP's own ``transform`` initializes new
points; the next projection places them exactly.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

N_NEIGHBORS = 5


def place_points(matrix: np.ndarray, coords: np.ndarray, missing: np.ndarray,
                 k: int = N_NEIGHBORS) -> np.ndarray:
    """``coords`` with the ``missing`` rows set to the mean of their k nearest mapped rows.

    Rows that are already mapped keep their position exactly; with no mapped row, nothing is
    placed (the rows stay NaN).
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    out = np.array(coords, dtype=np.float32, copy=True)
    missing = np.asarray(missing, dtype=bool)
    anchors = ~missing & np.isfinite(out).all(axis=1)
    todo = np.flatnonzero(missing)
    if not len(todo) or not anchors.any():
        return out
    finite = np.isfinite(matrix).all(axis=1)
    todo = todo[finite[todo]]
    anchors &= finite
    if not len(todo) or not anchors.any():
        return out
    index = NearestNeighbors(n_neighbors=min(k, int(anchors.sum()))).fit(matrix[anchors])
    neighbors = index.kneighbors(matrix[todo], return_distance=False)
    out[todo] = out[anchors][neighbors].mean(axis=1)
    return out
