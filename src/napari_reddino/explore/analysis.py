"""The cells' analysis (map, clusters, batch metrics) with one set of settings for the explorer
dock and the command line, over one shared neighbor graph.

Why one module: the dock and ``napari-reddino project`` / ``run`` used different k and cluster
counts, so the same cells gave different numbers in the viewer and in the report. Both call
these functions with :class:`Settings`; the neighbor graph is found once per set of cells
(:mod:`.neighbors`, cached by content) and reused by UMAP, Leiden, the batch metrics and label
spreading.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np

from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.neighbors import NeighborGraph, iter_feature_graph
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion


@dataclass(frozen=True)
class Settings:
    """``n_neighbors``: UMAP's and Leiden's neighborhood (and label spreading's); ``batch_k``:
    the batch metrics' neighborhood; ``n_clusters``: k-means clusters. Defaults: the table in
    :mod:`napari_reddino.defaults`."""

    n_neighbors: int = DEFAULTS.n_neighbors
    batch_k: int = DEFAULTS.batch_k
    n_clusters: int = DEFAULTS.n_clusters
    metric: str = DEFAULTS.metric
    pca_dims: int = DEFAULTS.pca_dims
    random_state: int = DEFAULTS.random_state

    def for_cells(self, n: int) -> Settings:
        """The settings clamped to what ``n`` cells allow (tiny sets still get an answer)."""
        return replace(self, n_neighbors=max(1, min(self.n_neighbors, n - 1)),
                       batch_k=max(1, min(self.batch_k, n - 1)),
                       n_clusters=int(min(self.n_clusters, max(2, n // 5))))

    @property
    def graph_k(self) -> int:
        return max(self.n_neighbors, self.batch_k)


DEFAULT = Settings()


@dataclass
class Analysis:
    """What :func:`iter_analyze` found: map, cluster ids, batch report (None: one subject)."""

    coords: np.ndarray
    clusters: np.ndarray
    batch: object | None
    settings: Settings
    method: str
    counted: np.ndarray | None = None  # the rows analyzed (None: all)


def on_rows(values: np.ndarray, rows: np.ndarray, fill) -> np.ndarray:
    """``values`` of the ``rows`` (bool mask) spread back over every row, ``fill`` elsewhere:
    NaN map coordinates and cluster -1 for objects that are not counted."""
    values = np.asarray(values)
    out = np.full((len(rows), *values.shape[1:]), fill, dtype=np.result_type(values, fill))
    out[rows] = values
    return out


def iter_graph(vectors, settings: Settings = DEFAULT, cancel: threading.Event | None = None
               ) -> ProgressGen[NeighborGraph]:
    """The shared neighbor graph of ``vectors`` for these settings (cached)."""
    s = settings.for_cells(len(vectors))
    _reduced, graph = yield from iter_feature_graph(
        vectors, s.graph_k, metric=s.metric, pca_dims=s.pca_dims,
        random_state=s.random_state, cancel=cancel)
    return graph


def iter_map(vectors, method: str = DEFAULTS.map_method, settings: Settings = DEFAULT,
             cancel: threading.Event | None = None) -> ProgressGen[np.ndarray]:
    """(N, 2) float32 map; UMAP uses the shared graph's ``n_neighbors`` nearest cells."""
    from napari_reddino.explore.projection import iter_project

    s = settings.for_cells(len(vectors))
    params = {}
    if method == "umap":
        params = dict(n_neighbors=max(2, s.n_neighbors), metric=s.metric, graph_k=s.graph_k)
    return (yield from iter_project(vectors, method, random_state=s.random_state,
                                    pca_dims=s.pca_dims, cancel=cancel, **params))


def iter_clusters(vectors, method: str = DEFAULTS.cluster_method, settings: Settings = DEFAULT,
                  cancel: threading.Event | None = None) -> ProgressGen[np.ndarray]:
    """(N,) cluster ids: k-means (``n_clusters``), HDBSCAN, or Leiden on the shared graph."""
    from napari_reddino.explore.clusters import cluster

    s = settings.for_cells(len(vectors))
    check_cancel(cancel)
    if method == "leiden":
        graph = yield from iter_graph(vectors, s, cancel)
        yield Progress(0, 1, f"Leiden on the neighbor graph of {len(vectors)} cells")
        return cluster(vectors, "leiden", n_neighbors=s.n_neighbors, graph=graph,
                       random_state=s.random_state)
    yield Progress(0, 1, f"{method} on {len(vectors)} cells")
    if method == "kmeans":
        return cluster(vectors, "kmeans", n_clusters=s.n_clusters, random_state=s.random_state)
    return cluster(vectors, method)


def iter_batch(vectors, subjects, classes=None, settings: Settings = DEFAULT,
               cancel: threading.Event | None = None) -> ProgressGen:
    """Batch-effect report over the shared graph's ``batch_k`` nearest cells."""
    from napari_reddino.explore.batch_effects import batch_metrics

    s = settings.for_cells(len(vectors))
    graph = yield from iter_graph(vectors, s, cancel)
    check_cancel(cancel)
    yield Progress(0, 1, "batch-effect metrics")
    return batch_metrics(vectors, subjects, classes, k=s.batch_k, graph=graph,
                         random_state=s.random_state)


def iter_analyze(vectors, subjects=None, classes=None, *, method: str = DEFAULTS.map_method,
                 settings: Settings = DEFAULT, cancel: threading.Event | None = None,
                 counted=None) -> ProgressGen[Analysis]:
    """Map + k-means clusters + batch metrics (when >= 2 subjects), as the dock computes them.

    ``counted`` (bool per row, ``label.counting.counted_rows``): the map, clusters and metrics
    are made of those rows only, so clumps and cut cells do not pull the map apart; the other
    rows get NaN coordinates and cluster -1 (:func:`on_rows`).
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if counted is not None and not np.all(counted):
        rows = np.asarray(counted, bool)
        if rows.sum() < 3:
            raise ValueError(f"only {int(rows.sum())} of {len(rows)} objects are counted, too "
                             "few for a map; show every object (counted_only=False)")
        subjects, classes = (None if v is None else np.asarray(v)[rows]
                             for v in (subjects, classes))
        sub = yield from iter_analyze(vectors[rows], subjects, classes, method=method,
                                      settings=settings, cancel=cancel)
        return Analysis(on_rows(sub.coords, rows, np.nan), on_rows(sub.clusters, rows, -1),
                        sub.batch, sub.settings, method, rows)
    s = settings.for_cells(len(vectors))
    coords = yield from iter_map(vectors, method, s, cancel)
    clusters = yield from iter_clusters(vectors, "kmeans", s, cancel)
    batch = None
    if subjects is not None and len(set(np.asarray(subjects).astype(str).tolist())) >= 2:
        batch = yield from iter_batch(vectors, subjects, classes, s, cancel)
    return Analysis(coords, clusters, batch, s, method)


def analyze(vectors, subjects=None, classes=None, **kwargs) -> Analysis:
    """Synchronous :func:`iter_analyze`."""
    return run_to_completion(iter_analyze(vectors, subjects, classes, **kwargs))
