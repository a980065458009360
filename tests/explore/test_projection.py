"""2-D maps: separation of known groups, caching, subsample + transform, quality, errors."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from napari_reddino.explore import projection as proj
from napari_reddino.explore.clusters import cluster
from napari_reddino.progress import Cancelled, Progress


@pytest.fixture(scope="module")
def blobs():
    """Three well separated groups, 400 cells x 64 dims (UMAP pre-reduces to 50 by PCA)."""
    x, y = make_blobs(400, n_features=64, centers=3, cluster_std=1.0, random_state=4)
    return x.astype(np.float32), y


@pytest.fixture(autouse=True)
def _fresh_cache():
    proj.clear_cache()
    yield
    proj.clear_cache()


def _separated(coords, y) -> bool:
    return adjusted_rand_score(y, cluster(coords, "kmeans", n_clusters=3)) == pytest.approx(1.0)


def test_pca_of_a_line_is_exact():
    t = np.linspace(-1, 1, 50)
    direction = np.array([1.0, 2.0, 2.0]) / 3.0
    coords = proj.project(np.outer(t, direction), "pca")
    assert coords.shape == (50, 2) and coords.dtype == np.float32
    np.testing.assert_allclose(np.abs(coords[:, 0]), np.abs(t), atol=1e-5)
    np.testing.assert_allclose(coords[:, 1], 0, atol=1e-5)


def test_umap_keeps_groups_apart_embeds_every_cell_and_reports_quality(blobs):
    x, y = blobs
    steps = []
    gen = proj.iter_projection(x, "umap", n_neighbors=10)
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            result = stop.value
            break
    assert all(isinstance(s, Progress) for s in steps) and steps[-1].fraction == 1.0
    assert any("nearest neighbors" in s.message for s in steps)  # the shared graph's search
    assert result.coords.shape == (400, 2) and result.coords.dtype == np.float32
    assert result.n_fit == 400 and _separated(result.coords, y)
    shuffled = proj.trustworthiness(x, np.random.default_rng(0).permutation(result.coords))
    assert result.trustworthiness > 0.8 > shuffled
    cached = proj.project(x, "umap", n_neighbors=10)
    assert np.array_equal(cached, result.coords)  # same content + parameters: from the cache
    proj.clear_cache()
    assert np.array_equal(proj.project(x, "umap", n_neighbors=10), result.coords)  # seeded


def test_umap_cancel_stops_during_the_layout(blobs):
    cancel = threading.Event()
    gen = proj.iter_project(blobs[0], "umap", n_neighbors=10, n_epochs=5000, cancel=cancel)
    for step in gen:
        if "layout epoch" in step.message and step.done > 0:  # the SGD is running
            cancel.set()
            with pytest.raises(Cancelled):
                next(gen)
            break
    else:
        pytest.fail("no layout progress was reported")


def test_tsne_keeps_groups_apart(blobs):
    x, y = blobs
    result = proj.projection(x[::3], "tsne", perplexity=15, max_iter=500)
    assert _separated(result.coords, y[::3]) and result.trustworthiness > 0.8


def test_cache_is_keyed_by_content_and_parameters(blobs, tmp_path):
    x = blobs[0]
    first = proj.project(x, "pca", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.npy"))
    assert len(files) == 1
    changed = x.copy()
    changed[0, 0] += 1.0
    assert proj.content_key(changed, method="pca") != proj.content_key(x, method="pca")
    assert proj.content_key(x, method="pca") != proj.content_key(x, method="umap")
    # a fresh session reads the disk cache: plant a marker there and get it back
    proj.clear_cache()
    marker = np.full_like(first, 7.0)
    np.save(files[0], marker)
    assert np.array_equal(proj.project(x, "pca", cache_dir=tmp_path), marker)
    proj.clear_cache()
    assert np.array_equal(proj.project(x, "pca"), first)  # without the disk cache: recomputed


def test_three_cells_still_get_a_map():
    x = np.random.default_rng(0).standard_normal((3, 20))
    for method in ("pca", "tsne"):
        result = proj.projection(x, method)
        assert result.coords.shape == (3, 2) and np.all(np.isfinite(result.coords))
        assert result.trustworthiness is None  # no neighborhoods to score with 3 cells


def test_trustworthiness_of_identity_and_of_noise():
    x = np.random.default_rng(0).standard_normal((300, 2))
    assert proj.trustworthiness(x, x) == pytest.approx(1.0)
    noise = np.random.default_rng(1).standard_normal((300, 2))
    assert proj.trustworthiness(x, noise) < 0.7
    assert proj.trustworthiness(x, x, max_samples=100) == pytest.approx(1.0)


def test_numba_cache_goes_to_a_user_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    folder = proj.configure_numba_cache(tmp_path / "numba")
    assert folder.is_dir() and os.environ["NUMBA_CACHE_DIR"] == str(folder)
    import numba

    assert str(folder) == numba.config.CACHE_DIR


def test_cancel_and_bad_input():
    x = np.random.default_rng(0).standard_normal((20, 3))
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        next(proj.iter_project(x, "pca", cancel=cancel))
    with pytest.raises(ValueError, match="NaN"):
        proj.project(np.where(x == x[0, 0], np.nan, x), "pca")
    with pytest.raises(ValueError, match="unknown projection method 'mds'"):
        proj.project(x, "mds")
    with pytest.raises(ValueError, match=r"t-SNE does not take these parameters.*n_neighbors"):
        proj.project(x, "tsne", n_neighbors=5)
    with pytest.raises(ValueError, match="at least 3 cells"):
        proj.project(x[:2], "pca")
    with pytest.raises(ValueError, match=r"\(N, D\) matrix"):
        proj.project(x[0], "pca")
