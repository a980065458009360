"""Clustering: recovers known groups, stable ids, noise, optional Leiden, clear errors."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from napari_reddino.explore.clusters import MissingDependencyError, cluster, relabel_by_size


@pytest.fixture(scope="module")
def blobs():
    """Three groups of 60, 120 and 180 cells in 16 dims."""
    return make_blobs([60, 120, 180], n_features=16, cluster_std=1.0, random_state=2)


def test_relabel_by_size_by_hand():
    labels = np.array([5, 5, 2, 2, 2, -1, 9])
    assert relabel_by_size(labels).tolist() == [1, 1, 0, 0, 0, -1, 2]


def test_kmeans_recovers_groups_with_ids_by_size(blobs):
    x, y = blobs
    labels = cluster(x, "kmeans", n_clusters=3, random_state=0)
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    assert np.bincount(labels).tolist() == [180, 120, 60]
    assert np.array_equal(labels, cluster(x, "kmeans", n_clusters=3, random_state=0))


def test_hdbscan_marks_far_outliers_as_noise(blobs):
    x, y = blobs
    outliers = np.full((3, x.shape[1]), 200.0) * np.array([[1], [-1], [0.5]])
    labels = cluster(np.vstack([x, outliers]), "hdbscan", min_cluster_size=20)
    assert labels[-3:].tolist() == [-1, -1, -1]
    assert adjusted_rand_score(y, labels[:-3]) == pytest.approx(1.0)


def test_clusters_a_2d_projection(blobs):
    y = blobs[1]
    coords = np.c_[y * 10.0, y * -5.0] + np.random.default_rng(0).normal(size=(len(y), 2))
    assert adjusted_rand_score(y, cluster(coords, "kmeans", n_clusters=3)) == pytest.approx(1.0)


def test_leiden_on_the_knn_graph(blobs):
    pytest.importorskip("leidenalg")
    x, y = blobs
    labels = cluster(x, "leiden", n_neighbors=10, resolution=0.05, random_state=0)
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    assert np.array_equal(labels, cluster(x, "leiden", n_neighbors=10, resolution=0.05))


def test_missing_leiden_says_what_to_install(blobs, monkeypatch):
    monkeypatch.setitem(sys.modules, "leidenalg", None)  # import now fails as if not installed
    with pytest.raises(MissingDependencyError, match="pip install leidenalg igraph"):
        cluster(blobs[0], "leiden")


def test_bad_input_gives_clear_messages():
    with pytest.raises(ValueError, match="unknown clustering method 'dbscan'"):
        cluster(np.zeros((5, 2)), "dbscan")
    with pytest.raises(ValueError, match="NaN"):
        cluster(np.array([[np.nan, 0.0]]), "kmeans", n_clusters=1)
    with pytest.raises(ValueError, match="n_clusters must be between 1 and 4"):
        cluster(np.eye(4), "kmeans", n_clusters=5)
    with pytest.raises(ValueError, match="\\(N, D\\) matrix"):
        cluster(np.zeros(5), "kmeans")
