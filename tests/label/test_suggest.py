"""Suggested cells to label: diverse (every cluster gets one), representative, never repeated."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from napari_reddino.label.suggest import suggest_cells


@pytest.fixture(scope="module")
def mixture():
    """8 clusters of very different sizes (a rare kind has 1 % of the cells)."""
    sizes = [2000, 1200, 800, 400, 200, 100, 60, 40]
    x, truth = make_blobs(sizes, n_features=40, cluster_std=1.0, center_box=(-15, 15),
                          random_state=3)
    return x.astype(np.float32), truth


def test_picks_cover_every_cluster_where_random_picks_do_not(mixture):
    x, truth = mixture
    picks = suggest_cells(x, 8, random_state=0)
    assert len(picks) == 8 and len(set(picks.tolist())) == 8
    assert set(truth[picks]) == set(range(8))
    random_cover = [len(set(truth[np.random.default_rng(s).choice(len(x), 8, replace=False)]))
                    for s in range(20)]
    assert np.mean(random_cover) < 6
    assert truth[picks[0]] == 0  # the biggest group comes first


def test_picks_are_representative_medoids(mixture):
    x, truth = mixture
    picks = suggest_cells(x, 8, random_state=0)
    for p in picks:
        members = x[truth == truth[p]]
        to_center = np.linalg.norm(members - members.mean(axis=0), axis=1)
        assert np.linalg.norm(x[p] - members.mean(axis=0)) <= np.quantile(to_center, 0.2)


def test_labeled_cells_are_excluded_and_their_clusters_come_last(mixture):
    x, truth = mixture
    labeled = [np.flatnonzero(truth == 0)[0], np.flatnonzero(truth == 1)[0]]
    picks = suggest_cells(x, 6, exclude=labeled, random_state=0)
    assert not set(picks) & set(labeled)
    assert set(truth[picks]) == set(range(2, 8))
    mask = np.zeros(len(x), bool)
    mask[labeled] = True
    assert set(suggest_cells(x, 6, exclude=mask, random_state=0)) == set(picks)


def test_small_inputs_and_bad_inputs():
    x = np.random.default_rng(0).standard_normal((5, 3))
    assert sorted(suggest_cells(x, 10)) == [0, 1, 2, 3, 4]
    assert len(suggest_cells(x, 3, exclude=np.arange(5))) == 0
    with pytest.raises(ValueError, match="NaN"):
        suggest_cells(np.full((4, 2), np.nan), 2)
    with pytest.raises(ValueError, match="at least 1"):
        suggest_cells(x, 0)
