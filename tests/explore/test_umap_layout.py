"""UMAP's fuzzy graph and vectorized layout (explore._umap_layout) against known truth."""

from __future__ import annotations

import subprocess
import sys
import threading

import numpy as np
import pytest

from napari_reddino.explore import _umap_layout as layout
from napari_reddino.explore import projection as proj
from napari_reddino.progress import Cancelled, run_to_completion


def _blobs(n=600, dim=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=8.0, size=(3, dim))
    y = rng.integers(0, 3, n)
    return (centers[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def test_smooth_knn_memberships_sum_to_log2_k():
    d = np.sort(np.random.default_rng(0).uniform(0.1, 2.0, (200, 14)), axis=1)
    rho, sigma = layout.smooth_knn(d)
    np.testing.assert_allclose(rho, d[:, 0])  # the nearest other cell is fully connected
    total = np.exp(-np.maximum(d - rho[:, None], 0) / sigma[:, None]).sum(axis=1)
    np.testing.assert_allclose(total, np.log2(15), rtol=1e-4)  # 14 others + the cell itself


def test_fuzzy_graph_is_a_symmetric_probabilistic_union():
    x, _ = _blobs(200)
    from napari_reddino.explore.neighbors import neighbor_graph

    idx, dist = neighbor_graph(x, 10, metric="euclidean").others()
    graph = layout.fuzzy_graph(idx, dist).tocsr()
    assert abs(graph - graph.T).max() < 1e-6
    assert graph.diagonal().max() == 0 and graph.data.min() > 0 and graph.data.max() <= 1
    one_way = np.zeros((200, 200))
    rho, sigma = layout.smooth_knn(dist)
    one_way[np.repeat(np.arange(200), 10), idx.ravel()] = np.exp(
        -np.maximum(dist - rho[:, None], 0) / sigma[:, None]).ravel()
    union = one_way + one_way.T - one_way * one_way.T
    np.testing.assert_allclose(graph.toarray(), union, atol=1e-6)


def test_curve_params_match_umaps_published_defaults():
    a, b = layout.curve_params(1.0, 0.1)  # umap-learn's a, b for min_dist 0.1, spread 1
    assert a == pytest.approx(1.577, abs=0.01) and b == pytest.approx(0.895, abs=0.01)


def test_layout_separates_groups_is_seeded_and_cancels():
    x, y = _blobs()
    from napari_reddino.explore.neighbors import neighbor_graph

    graph = layout.fuzzy_graph(*neighbor_graph(x, 14, metric="euclidean").others())
    start = layout.initial_layout(x, 2, np.random.default_rng(0))
    first = run_to_completion(layout.iter_layout(graph, start, 100, random_state=0))
    again = run_to_completion(layout.iter_layout(graph, start, 100, random_state=0))
    assert np.array_equal(first, again)
    centers = np.array([first[y == g].mean(axis=0) for g in range(3)])
    spread = max(np.linalg.norm(first[y == g] - centers[g], axis=1).mean() for g in range(3))
    gaps = [np.linalg.norm(centers[i] - centers[j]) for i in range(3) for j in range(i + 1, 3)]
    assert min(gaps) > 3 * spread
    assert proj.trustworthiness(x, first) > 0.9
    cancel = threading.Event()
    gen = layout.iter_layout(graph, start, 1000, cancel=cancel)
    next(gen)
    cancel.set()
    with pytest.raises(Cancelled):
        run_to_completion(gen)


def test_a_map_compiles_nothing():
    """The explorer's map needs neither numba nor umap-learn: no compile in any session."""
    code = ("import sys, numpy as np\n"
            "from napari_reddino.explore import projection as project\n"
            "x = np.random.default_rng(0).standard_normal((500, 64)).astype('float32')\n"
            "assert project.project(x, 'umap').shape == (500, 2)\n"
            "print(sorted(m for m in ('numba', 'umap', 'pynndescent') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow  # umap-learn's kernels load from numba's cache (compiled the first time)
def test_trustworthiness_matches_umap_learn_on_the_same_graph():
    x, _ = _blobs(1500, dim=40, seed=1)
    ours = proj.projection(x, "umap")
    # an option the numpy layout does not take sends the same cells through umap-learn's fit
    reference = proj.projection(x, "umap", negative_sample_rate=5)
    assert ours.trustworthiness == pytest.approx(reference.trustworthiness, abs=0.01)
    assert not np.array_equal(ours.coords, reference.coords)
