"""The shared k-NN graph: exact against scikit-learn, cached by content, and found once for the
map, Leiden, label spreading and the batch metrics of the same cells."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.neighbors import NearestNeighbors

from napari_reddino.explore import analysis, neighbors
from napari_reddino.explore.neighbors import neighbor_graph
from napari_reddino.progress import Cancelled


@pytest.fixture(autouse=True)
def _fresh_cache():
    neighbors.clear_cache()
    yield
    neighbors.clear_cache()


@pytest.fixture(scope="module")
def cells():
    """600 cells in 3 groups x 80 dims (above 50: the shared graph is found after PCA)."""
    x, y = make_blobs(600, n_features=80, centers=3, cluster_std=2.0, random_state=3)
    return x.astype(np.float32), y


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_search_matches_scikit_learn(metric):
    x = np.random.default_rng(0).standard_normal((700, 24)).astype(np.float32)
    graph = neighbor_graph(x, 10, metric=metric)
    nn = NearestNeighbors(n_neighbors=11, metric=metric, algorithm="brute").fit(x)
    dist, idx = nn.kneighbors(x)
    assert graph.method == "exact" and graph.indices.shape == (700, 11)
    np.testing.assert_array_equal(graph.indices[:, 0], np.arange(700))  # the cell itself
    np.testing.assert_array_equal(graph.indices, idx)
    np.testing.assert_allclose(graph.distances, dist, atol=2e-5)
    assert np.all(np.diff(graph.distances, axis=1) >= 0)  # nearest first


def test_chunks_and_duplicates_keep_the_cell_itself_first(monkeypatch):
    monkeypatch.setattr(neighbors, "_CHUNK_ELEMENTS", 64 * 100)  # 64 rows per chunk
    x = np.random.default_rng(1).standard_normal((100, 5)).astype(np.float32)
    x[50] = x[7]  # exact duplicates: each is the other's nearest, distance 0
    graph = neighbor_graph(x, 3, metric="euclidean")
    assert graph.indices[:, 0].tolist() == list(range(100))
    assert graph.indices[7, 1] == 50 and graph.indices[50, 1] == 7
    assert graph.distances[7, 1] == pytest.approx(0.0, abs=1e-3)
    idx, dist = graph.others(2)
    assert idx.shape == dist.shape == (100, 2) and not np.any(idx == np.arange(100)[:, None])


@pytest.mark.slow  # numba compiles NN-descent in each new process (~20 s)
def test_approximate_search_finds_nearly_all_neighbors(cells):
    x = cells[0][:, :20].copy()
    exact = neighbor_graph(x, 10, exact=True)
    neighbors.clear_cache()
    approx = neighbor_graph(x, 10, exact=False)
    assert approx.method == "nndescent"
    assert approx.indices[:, 0].tolist() == list(range(len(x)))
    found = [len(set(a) & set(b)) for a, b in zip(exact.indices, approx.indices)]
    assert np.mean(found) / 11 > 0.95


def test_cached_by_content_and_a_smaller_k_is_a_slice(cells):
    x = cells[0]
    builds = neighbors.BUILDS[0]
    graph = neighbor_graph(x, 20)
    assert neighbor_graph(x.copy(), 20) is graph  # same bytes, another array: from the cache
    small = neighbor_graph(x, 5)
    np.testing.assert_array_equal(small.indices, graph.indices[:, :6])
    assert neighbors.BUILDS[0] == builds + 1
    changed = x.copy()
    changed[0, 0] += 1.0
    neighbor_graph(changed, 20)
    assert neighbors.BUILDS[0] == builds + 2


def test_adjacency_is_symmetric_without_self_loops(cells):
    graph = neighbor_graph(cells[0], 8)
    adjacency = graph.adjacency(8, weighted=True)
    assert (adjacency != adjacency.T).nnz == 0 and adjacency.diagonal().sum() == 0
    assert adjacency.shape == (600, 600) and (adjacency.getnnz(axis=1) >= 8).all()


def test_map_clusters_spreading_and_batch_metrics_share_one_graph(cells, monkeypatch):
    """One search for four users; UMAP gets exactly the graph's nearest columns."""
    pytest.importorskip("leidenalg")
    from napari_reddino.explore import _umap_layout
    from napari_reddino.label.propagate import propagate

    x, y = cells
    seen = {}
    fuzzy_graph, initial_layout = _umap_layout.fuzzy_graph, _umap_layout.initial_layout

    def record_graph(indices, distances):
        seen["knn"] = indices, distances
        return fuzzy_graph(indices, distances)

    def record_start(reduced, *args):
        seen["reduced"] = reduced
        return initial_layout(reduced, *args)

    monkeypatch.setattr(_umap_layout, "fuzzy_graph", record_graph)
    monkeypatch.setattr(_umap_layout, "initial_layout", record_start)
    builds = neighbors.BUILDS[0]
    settings = analysis.Settings()
    analysis.analyze(x, subjects=np.where(y == 0, "a", "b"), settings=settings)
    graph = analysis.run_to_completion(analysis.iter_graph(x, settings))
    clusters = analysis.run_to_completion(analysis.iter_clusters(x, "leiden", settings))
    manual = np.full(len(x), None, dtype=object)
    manual[[0, 1, 2]] = [f"g{v}" for v in y[[0, 1, 2]]]
    propagate(x, manual, k=10, spreading=True)
    assert neighbors.BUILDS[0] == builds + 1  # found once, served from the cache after
    # UMAP's n_neighbors counts the cell itself: the n_neighbors - 1 nearest others
    np.testing.assert_array_equal(seen["knn"][0], graph.indices[:, 1 : settings.n_neighbors])
    np.testing.assert_array_equal(seen["knn"][1], graph.distances[:, 1 : settings.n_neighbors])
    assert seen["reduced"].shape == (600, 50) and graph.k == settings.graph_k
    assert len(np.unique(clusters)) >= 3  # Leiden on that graph splits the 3 groups at least


def test_cancel_and_bad_input():
    x = np.random.default_rng(0).standard_normal((50, 4)).astype(np.float32)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        neighbor_graph(x, 5, cancel=cancel)
    with pytest.raises(ValueError, match="unknown metric"):
        neighbor_graph(x, 5, metric="manhattan")
    with pytest.raises(ValueError, match="NaN"):
        neighbor_graph(np.full((5, 2), np.nan), 2)
    with pytest.raises(ValueError, match="holds 5 neighbors"):
        neighbor_graph(x, 5).others(6)
