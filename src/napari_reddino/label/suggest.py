"""Which cells to label first: a handful of diverse, representative cells.

k-means on the chosen feature space splits the cells into as many groups as cells are wanted;
the suggestion is each group's medoid (the real cell nearest the group's center), biggest group
first. Medoids are typical of many cells (so their label carries far) and the groups cover the
whole space (so rare shapes get a cell too), which random picks do not guarantee.
"""

from __future__ import annotations

import numpy as np

from napari_reddino.defaults import DEFAULTS

_PCA_DIMS = 32  # k-means on the leading components: same groups, much faster on 384-d vectors


def _reduce(x: np.ndarray, random_state: int) -> np.ndarray:
    if x.shape[1] <= _PCA_DIMS or x.shape[0] <= _PCA_DIMS:
        return x
    from sklearn.decomposition import PCA

    return PCA(_PCA_DIMS, random_state=random_state).fit_transform(x).astype(np.float32)


def suggest_cells(vectors, n: int = DEFAULTS.n_suggestions, *, exclude=None,
                  random_state: int = DEFAULTS.random_state, counted=None) -> np.ndarray:
    """Row indices of ``n`` cells to label, most representative first.

    ``exclude`` (bool mask or row indices, e.g. the cells labeled already) are never suggested,
    and groups that already hold such a cell come last: their kind is known. ``counted`` (bool
    per row, ``label.counting.counted_rows``): only those rows are suggested and make the
    groups, so a clump or a cell cut by the border never takes a red cell's place.
    """
    from sklearn.cluster import KMeans, MiniBatchKMeans

    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"vectors must be a non-empty (N, D) matrix, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("vectors contain NaN / inf")
    if int(n) < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    taken = np.zeros(len(x), bool)
    if exclude is not None:
        exclude = np.asarray(exclude)
        taken[exclude if exclude.dtype != bool else np.flatnonzero(exclude)] = True
    if counted is not None and not np.all(counted):
        rows = np.flatnonzero(np.asarray(counted, bool))
        if rows.size == 0:
            return np.zeros(0, np.int64)
        return rows[suggest_cells(x[rows], n, exclude=taken[rows], random_state=random_state)]
    free = np.flatnonzero(~taken)
    n = min(int(n), free.size)
    if n == 0:
        return np.zeros(0, np.int64)
    n_groups = min(n + int(taken.sum()), len(x))
    reduced = _reduce(x, random_state)
    kind = KMeans if len(x) <= 20000 else MiniBatchKMeans
    model = kind(n_clusters=n_groups, n_init=3, random_state=random_state).fit(reduced)
    groups = model.labels_
    dist = np.linalg.norm(reduced - model.cluster_centers_[groups], axis=1)
    dist[taken] = np.inf
    sizes = np.bincount(groups, minlength=n_groups)
    known = np.bincount(groups[taken], minlength=n_groups) > 0
    order = np.lexsort((-sizes, known))  # unknown groups first, biggest first
    picks = []
    for group in order:
        members = np.flatnonzero(groups == group)
        best = members[np.argmin(dist[members])]
        if np.isfinite(dist[best]):
            picks.append(best)
        if len(picks) == n:
            break
    if len(picks) < n:  # groups made only of labeled cells: fill with the farthest free cells
        rest = np.setdiff1d(free, picks)
        far = rest[np.argsort(-dist[rest] * ~np.isinf(dist[rest]))]
        picks.extend(far[: n - len(picks)])
    return np.asarray(picks, np.int64)
