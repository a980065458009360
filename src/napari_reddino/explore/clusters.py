"""Cluster cells on their embeddings or on a 2-D map: k-means, HDBSCAN, Leiden.

Labels are renumbered by cluster size (0 = largest; ties by first cell), so colors stay stable
when a user re-runs with a different seed and the clusters only swap ids. ``-1`` is noise (HDBSCAN).
"""

from __future__ import annotations

import numpy as np

from napari_reddino import names as nm

METHODS = nm.CLUSTER_METHODS
MINIBATCH_ABOVE = 50_000  # k-means switches to MiniBatchKMeans above this many cells


class MissingDependencyError(ImportError):
    """An optional clustering backend is not installed."""


def _validate(X) -> np.ndarray:
    x = np.asarray(X)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"cluster needs an (N, D) matrix, got shape {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError("cluster input contains NaN / inf or is not numeric")
    return np.ascontiguousarray(x, dtype=np.float32)


def relabel_by_size(labels: np.ndarray) -> np.ndarray:
    """Cluster ids renumbered 0, 1, ... from largest to smallest; -1 (noise) kept."""
    labels = np.asarray(labels)
    ids, first, counts = np.unique(labels[labels >= 0], return_index=True, return_counts=True)
    order = np.lexsort((first, -counts))
    mapping = np.full(int(ids.max()) + 1 if ids.size else 0, -1, dtype=np.int64)
    mapping[ids[order]] = np.arange(ids.size)
    out = np.full(labels.shape, -1, dtype=np.int64)
    out[labels >= 0] = mapping[labels[labels >= 0]]
    return out


def kmeans(x: np.ndarray, n_clusters: int = 8, *, random_state: int = 0, **params) -> np.ndarray:
    from sklearn.cluster import KMeans, MiniBatchKMeans

    if not 1 <= n_clusters <= x.shape[0]:
        raise ValueError(f"n_clusters must be between 1 and {x.shape[0]} cells, got {n_clusters}")
    cls = MiniBatchKMeans if x.shape[0] > MINIBATCH_ABOVE else KMeans
    model = cls(n_clusters=n_clusters, random_state=random_state, n_init="auto", **params)
    return model.fit_predict(x)


def hdbscan(x: np.ndarray, min_cluster_size: int = 15, **params) -> np.ndarray:
    from sklearn.cluster import HDBSCAN

    if x.shape[0] < 2:
        raise ValueError("HDBSCAN needs at least 2 cells")
    min_cluster_size = max(2, min(int(min_cluster_size), x.shape[0]))
    return HDBSCAN(min_cluster_size=min_cluster_size, **params).fit_predict(x)


def leiden(
    x: np.ndarray, *, n_neighbors: int = 15, resolution: float = 1.0, random_state: int = 0,
    graph=None,
) -> np.ndarray:
    """Leiden communities of the symmetric k-NN graph (leidenalg + igraph, optional).

    ``graph``: a :class:`~.neighbors.NeighborGraph` of these cells (the one the
    map used); without it the shared graph of ``x`` is found (or taken from the cache).
    """
    try:
        import igraph
        import leidenalg
    except ImportError:
        raise MissingDependencyError(
            "Leiden clustering needs the optional packages 'leidenalg' and 'igraph': "
            "pip install leidenalg igraph (or use method='kmeans' / 'hdbscan')"
        ) from None
    from napari_reddino.explore.neighbors import DEFAULT_K, feature_graph

    n_neighbors = min(int(n_neighbors), x.shape[0] - 1)
    if n_neighbors < 1:
        raise ValueError("Leiden needs at least 2 cells")
    if graph is None:
        graph = feature_graph(x, max(n_neighbors, DEFAULT_K), random_state=random_state)
    if len(graph.indices) != x.shape[0]:
        raise ValueError(f"the neighbor graph has {len(graph.indices)} cells, x {x.shape[0]}")
    adjacency = graph.adjacency(min(n_neighbors, graph.k)).tocoo()
    upper = adjacency.row < adjacency.col
    g = igraph.Graph(n=x.shape[0], edges=np.c_[adjacency.row[upper], adjacency.col[upper]])
    partition = leidenalg.find_partition(
        g, leidenalg.RBConfigurationVertexPartition,
        resolution_parameter=resolution, seed=random_state,
    )
    return np.asarray(partition.membership)


def cluster(X, method: str = "kmeans", **params) -> np.ndarray:
    """(N,) int cluster id per row of ``X`` (embeddings or a 2-D map); -1 = noise.

    ``method="kmeans"``: ``n_clusters`` (8), ``random_state``; ``"hdbscan"``: ``min_cluster_size``
    (15), ``min_samples``; ``"leiden"``: ``n_neighbors`` (15), ``resolution`` (1.0),
    ``random_state``. The same input and parameters always give the same ids.
    """
    x = _validate(X)
    if method == "kmeans":
        labels = kmeans(x, **params)
    elif method == "hdbscan":
        labels = hdbscan(x, **params)
    elif method == "leiden":
        labels = leiden(x, **params)
    else:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {METHODS}")
    return relabel_by_size(labels)
