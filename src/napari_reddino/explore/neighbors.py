"""One k-nearest-neighbor graph per feature matrix, shared by the map, clusters, batch metrics
and label spreading.

Why not let each library search on its own: UMAP, Leiden, the batch metrics and label spreading
all need "the k nearest cells of every cell"; found once and cached by the matrix's content, the
second to fourth users get it for free. Why not UMAP's own search (NN-descent): numba compiles it
in every new process (~30 s on 2 cores) and it cannot be cached on disk, so a user's first map
waited for it. Here:

- up to ``EXACT_MAX`` cells, an exact search by BLAS: one float32 matrix product per chunk of
  cells against all cells, then ``argpartition``; nothing to compile, exact results;
- above, pynndescent's NN-descent (approximate; numba compiles it once per process, which the
  explorer does in a background thread when it opens), chosen by measurement
  (``benchmarks/explorer.py``, ``docs/benchmarks.md``).

Column 0 of every row is the cell itself (UMAP's convention, distance 0), so ``k`` neighbors
means ``k`` other cells and ``indices`` has ``k + 1`` columns.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

METRICS = ("cosine", "euclidean")
DEFAULT_K = DEFAULTS.batch_k  # neighbors per cell in the shared graph: batch metrics' k, > UMAP's
EXACT_MAX = 20_000  # cells; above, the exact search's N^2 selection loses to NN-descent
_CHUNK_ELEMENTS = 1 << 24  # distances held per chunk: 64 MiB of float32
_CACHE: OrderedDict[tuple, NeighborGraph] = OrderedDict()
_REDUCED: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_SIZE = 4
BUILDS = [0]  # graphs searched (not served from the cache) in this process; tests read it


@dataclass(frozen=True, eq=False)
class NeighborGraph:
    """``indices`` (N, k + 1) int64 and ``distances`` (N, k + 1) float32, nearest first,
    column 0 = the cell itself; ``method`` says how it was found ("exact" or "nndescent")."""

    indices: np.ndarray
    distances: np.ndarray
    metric: str
    method: str

    @property
    def k(self) -> int:
        """Neighbors per cell, the cell itself not counted."""
        return self.indices.shape[1] - 1

    def others(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(indices, distances) of the ``k`` nearest other cells, (N, k) each."""
        k = self.k if k is None else int(k)
        if not 1 <= k <= self.k:
            raise ValueError(f"this graph holds {self.k} neighbors per cell, asked for {k}")
        return self.indices[:, 1 : k + 1], self.distances[:, 1 : k + 1]

    def umap_knn(self, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
        """``(indices, distances)`` for ``umap.UMAP(precomputed_knn=...)``: ``n_neighbors``
        columns, the cell itself first, as umap-learn counts them."""
        if not 2 <= n_neighbors <= self.k + 1:
            raise ValueError(f"this graph holds {self.k + 1} columns, asked for {n_neighbors}")
        # copies: umap-learn writes -1 / inf into them for "disconnected" neighbors
        return (np.array(self.indices[:, :n_neighbors], order="C"),
                np.array(self.distances[:, :n_neighbors], order="C"))

    def adjacency(self, k: int | None = None, *, weighted: bool = False):
        """Symmetric sparse (N, N) graph of the ``k`` nearest other cells (CSR).

        ``weighted``: cosine similarity (clipped at 0) for cosine graphs, ``1 / (1 + d)`` for
        euclidean ones; else 1 per edge.
        """
        from scipy import sparse

        idx, dist = self.others(k)
        n, k = idx.shape
        if not weighted:
            values = np.ones(idx.size, dtype=np.float32)
        elif self.metric == "cosine":
            values = np.clip(1.0 - dist, 0.0, None).ravel()
        else:
            values = (1.0 / (1.0 + dist)).ravel()
        graph = sparse.csr_matrix((values, (np.repeat(np.arange(n), k), idx.ravel())),
                                  shape=(n, n))
        return graph.maximum(graph.T).tocsr()


def unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero (similarity 0 to everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _prepare(x: np.ndarray, metric: str) -> np.ndarray:
    # unit rows: cosine similarity is then a dot product
    return unit_rows(x) if metric == "cosine" else x


def _self_first(idx: np.ndarray, dist: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put each cell itself in column 0 (exact duplicates may have pushed it elsewhere, an
    approximate search may have missed it), distance 0, keeping the others in order."""
    n, width = idx.shape
    rows = np.arange(n)
    own = idx == rows[:, None]
    where = np.where(own.any(axis=1), own.argmax(axis=1), width - 1)
    keep = np.ones_like(own)
    keep[rows, where] = False
    out_idx = np.empty_like(idx)
    out_dist = np.empty_like(dist)
    out_idx[:, 0], out_dist[:, 0] = rows, 0.0
    out_idx[:, 1:] = idx[keep].reshape(n, width - 1)
    out_dist[:, 1:] = dist[keep].reshape(n, width - 1)
    return out_idx, out_dist


def _iter_exact(x, k, metric, cancel) -> ProgressGen[tuple[np.ndarray, np.ndarray]]:
    """Chunked exact search: the cell itself is among its own nearest (distance 0)."""
    n = x.shape[0]
    width = min(k + 1, n)
    sq = None if metric == "cosine" else np.einsum("ij,ij->i", x, x)
    rows = int(np.clip(_CHUNK_ELEMENTS // max(n, 1), 64, 8192))
    idx = np.empty((n, width), dtype=np.int64)
    dist = np.empty((n, width), dtype=np.float32)
    starts = range(0, n, rows)
    for step, start in enumerate(starts):
        check_cancel(cancel)
        yield Progress(step, len(starts), f"nearest neighbors: cells {start}/{n}")
        chunk = x[start : start + rows]
        score = chunk @ x.T  # larger = nearer for cosine; for euclidean turned into |y|^2 - 2xy
        if metric == "euclidean":
            score *= -2.0
            score += sq[None, :]
        else:
            np.negative(score, out=score)
        part = np.argpartition(score, width - 1, axis=1)[:, :width] if width < n else \
            np.broadcast_to(np.arange(n), score.shape)
        best = np.take_along_axis(score, part, axis=1)
        order = np.argsort(best, axis=1, kind="stable")
        idx[start : start + len(chunk)] = np.take_along_axis(part, order, axis=1)
        best = np.take_along_axis(best, order, axis=1)
        if metric == "euclidean":
            best = np.sqrt(np.maximum(best + sq[start : start + len(chunk), None], 0.0))
        else:
            best = np.maximum(1.0 + best, 0.0)  # 1 - cosine similarity
        dist[start : start + len(chunk)] = best
    return idx, dist


def _approximate(x, k, metric, random_state) -> tuple[np.ndarray, np.ndarray, str]:
    """pynndescent's NN-descent (what umap-learn uses): (indices, distances, method).

    Measured on 100k cells x 50 dims (2 shared cores): faiss's HNSW index (M=32) took more
    than twice as long, faiss's IVF index lost recall on cell-like data (0.58 at nprobe 8,
    0.80 at 16), and an exact search's N^2 selection grows past both. Its numba kernels compile
    once per process (the explorer warms them in a background thread when it holds more than
    ``EXACT_MAX`` cells). All cores: 100k cells in 10.7 s instead of ~15 s with one, and the
    same graph run after run for a fixed ``random_state`` (seeded per thread).
    """
    from pynndescent import NNDescent

    idx, dist = NNDescent(x, metric=metric, n_neighbors=k + 1, random_state=random_state,
                          n_jobs=-1, low_memory=True).neighbor_graph
    return idx.astype(np.int64), dist.astype(np.float32), "nndescent"


def warm_up_index(metric: str = "cosine") -> None:
    """Compile NN-descent for ``metric`` on a tiny matrix (numba cannot cache it on disk)."""
    from pynndescent import NNDescent

    x = np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32)
    index = NNDescent(x, metric=metric, n_neighbors=5, random_state=0, n_jobs=1,
                      low_memory=True)
    assert index.neighbor_graph[0].shape == (300, 5)  # the property runs the search


def content_key(vectors: np.ndarray, **params) -> str:
    """BLAKE2 hash of the array's dtype, shape and bytes plus the parameters."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"{vectors.dtype.str}{vectors.shape}".encode())
    digest.update(np.ascontiguousarray(vectors).view(np.uint8).reshape(-1))
    digest.update(json.dumps(params, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def graph_key(x: np.ndarray, metric: str) -> tuple:
    """Cache key: BLAKE2 of the matrix's dtype, shape and bytes, and the metric."""
    return (content_key(x), metric)


def clear_cache() -> None:
    """Forget every cached graph and reduced matrix."""
    _CACHE.clear()
    _REDUCED.clear()


def reduce_features(vectors, pca_dims: int = 50, random_state: int | None = 0) -> np.ndarray:
    """The top ``pca_dims`` principal components (float32), cached by content; ``vectors``
    as float32 when they have no more columns (or rows) than that.

    Why: neighbors, clusters and the map all look at the same reduced cells, and a 384-d
    search costs ~8x a 50-d one for nearly the same neighbors.
    """
    x = _as_matrix(vectors)
    if x.shape[1] <= pca_dims or x.shape[0] <= pca_dims:
        return x
    key = (content_key(x), pca_dims, random_state)
    if key not in _REDUCED:
        from sklearn.decomposition import PCA

        # one D x D covariance and its eigenvectors: ~10x faster than randomized SVD for
        # tall matrices (N >> D, D in the hundreds), and exact
        solver = "covariance_eigh" if x.shape[1] <= 2048 else "auto"
        pca = PCA(n_components=pca_dims, svd_solver=solver, random_state=random_state)
        _REDUCED[key] = np.ascontiguousarray(pca.fit_transform(x), dtype=np.float32)
        while len(_REDUCED) > _CACHE_SIZE:
            _REDUCED.popitem(last=False)
    return _REDUCED[key]


def iter_feature_graph(vectors, k: int = DEFAULT_K, *, metric: str = DEFAULTS.metric,
                       pca_dims: int = DEFAULTS.pca_dims, random_state: int = DEFAULTS.random_state,
                       cancel: threading.Event | None = None
                       ) -> ProgressGen[tuple[np.ndarray, NeighborGraph]]:
    """(reduced matrix, its neighbor graph): the one graph the map, Leiden, the batch metrics
    and label spreading share for the same cells and settings."""
    check_cancel(cancel)
    yield Progress(0, 1, f"reducing {len(vectors)} cells to {pca_dims} dimensions")
    reduced = reduce_features(vectors, pca_dims, random_state)
    graph = yield from iter_neighbor_graph(reduced, k, metric=metric,
                                            random_state=random_state, cancel=cancel)
    return reduced, graph


def cached_graph(x: np.ndarray, k: int, metric: str = "cosine") -> NeighborGraph | None:
    """The cached graph of ``x`` with at least ``k`` neighbors, if any (no search)."""
    graph = _CACHE.get(graph_key(_as_matrix(x), metric))
    return graph if graph is not None and graph.k >= min(k, len(graph.indices) - 1) else None


def _as_matrix(x) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"neighbors need an (N, D) matrix of at least 2 cells, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise ValueError("vectors contain NaN / inf or are not numeric; re-run the embedding")
    return np.ascontiguousarray(x, dtype=np.float32)


def iter_neighbor_graph(
    vectors,
    k: int = DEFAULTS.n_neighbors,
    *,
    metric: str = DEFAULTS.metric,
    exact: bool | None = None,
    random_state: int = DEFAULTS.random_state,
    cancel: threading.Event | None = None,
) -> ProgressGen[NeighborGraph]:
    """The ``k`` nearest other cells of every row of ``vectors`` (N, D), cached by content.

    ``exact=None`` picks the exact search up to :data:`EXACT_MAX` cells, an index above.
    A cached graph with more neighbors serves a smaller ``k`` (columns are nearest first).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    x = _as_matrix(vectors)
    k = min(int(k), x.shape[0] - 1)
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    key = graph_key(x, metric)
    graph = _CACHE.get(key)
    if graph is not None and graph.k >= k and (exact is None or exact == (graph.method ==
                                                                          "exact")):
        _CACHE.move_to_end(key)
        return _sliced(graph, k)
    use_exact = x.shape[0] <= EXACT_MAX if exact is None else exact
    prepared = _prepare(x, metric)
    if use_exact:
        idx, dist = yield from _iter_exact(prepared, k, metric, cancel)
        method = "exact"
    else:
        check_cancel(cancel)
        yield Progress(0, 1, f"nearest neighbors of {x.shape[0]} cells (approximate index)")
        idx, dist, method = _approximate(prepared, k, metric, random_state)
    check_cancel(cancel)
    BUILDS[0] += 1
    idx, dist = _self_first(idx, dist)
    graph = NeighborGraph(idx, dist, metric, method)
    _CACHE[key] = graph
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return graph


def feature_graph(vectors, k: int = DEFAULT_K, **kwargs) -> NeighborGraph:
    """Synchronous :func:`iter_feature_graph`, the graph only."""
    return run_to_completion(iter_feature_graph(vectors, k, **kwargs))[1]


def _sliced(graph: NeighborGraph, k: int) -> NeighborGraph:
    if graph.k == k:
        return graph
    return NeighborGraph(graph.indices[:, : k + 1], graph.distances[:, : k + 1], graph.metric,
                          graph.method)


def neighbor_graph(vectors, k: int = DEFAULTS.n_neighbors, **kwargs) -> NeighborGraph:
    """Synchronous :func:`iter_neighbor_graph`."""
    return run_to_completion(iter_neighbor_graph(vectors, k, **kwargs))
