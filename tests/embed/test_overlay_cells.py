"""One colour per cell: PCA colours of cell vectors, painted into the cells, named in words."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.embed.cell_overlay import cell_colours, correlated_features, paint_cells
from napari_reddino.explore.cell_colours import legend_lines, session_colours


def _clusters(seed=0, per=30, dim=16):
    """Four well-separated groups of vectors (three axes between them) and each row's group."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 10, (4, dim))
    groups = np.repeat(np.arange(4), per)
    return centers[groups] + rng.normal(0, 0.5, (len(groups), dim)), groups


def test_cells_of_one_group_get_one_colour_and_groups_differ():
    vectors, groups = _clusters()
    colours = cell_colours(vectors).colours
    assert colours.shape == (len(vectors), 3) and colours.min() >= 0 and colours.max() <= 1
    means = np.stack([colours[groups == g].mean(axis=0) for g in range(4)])
    within = max(np.linalg.norm(colours[groups == g] - means[g], axis=1).mean() for g in range(4))
    between = min(np.linalg.norm(means[a] - means[b]) for a in range(4) for b in range(a + 1, 4))
    assert within < 0.2 * between


def test_colours_are_fitted_on_the_chosen_cells_and_do_not_depend_on_row_order():
    vectors, _groups = _clusters(seed=1)
    outlier = np.vstack([vectors, np.full((1, vectors.shape[1]), 500.0)])
    fit_on = np.r_[np.ones(len(vectors), bool), False]
    with_outlier = cell_colours(outlier, fit_on)
    np.testing.assert_allclose(with_outlier.colours[:-1], cell_colours(vectors).colours,
                               atol=1e-5)  # the unfitted outlier changes nobody's colour
    order = np.random.default_rng(2).permutation(len(vectors))
    np.testing.assert_allclose(cell_colours(vectors[order]).colours,
                               cell_colours(vectors).colours[order], atol=1e-5)
    with pytest.raises(ValueError, match="at least 4"):
        cell_colours(vectors[:3])


def test_paint_cells_one_colour_inside_each_cell_and_transparent_background():
    labels = np.zeros((6, 8), np.int32)
    labels[1:3, 1:4], labels[3:6, 5:8], labels[0, 7] = 4, 9, 12  # cell 12 has no colour
    rgba = paint_cells(labels, [4, 9], np.array([[1.0, 0.0, 0.5], [0.2, 0.4, 0.6]]))
    assert rgba.shape == (6, 8, 4) and rgba.dtype == np.uint8
    assert (rgba[labels == 4] == [255, 0, 128, 255]).all()
    assert (rgba[labels == 9] == [51, 102, 153, 255]).all()
    assert (rgba[(labels == 0) | (labels == 12), 3] == 0).all()


def test_correlated_features_and_legend_words_follow_the_truth():
    rng = np.random.default_rng(3)
    area = rng.normal(100, 20, 200)
    pallor = rng.uniform(0, 1, 200)
    noise = rng.normal(0, 1, 200)
    scores = np.stack([area, -pallor, noise], axis=1)
    table = pd.DataFrame({"morph_area": area, "morph_pallor_fraction": pallor,
                          "morph_hue": rng.normal(0, 1, 200)})
    ranked = correlated_features(scores, table, top=2)
    assert ranked[0]["feature"].iloc[0] == "morph_area"
    assert ranked[0]["r"].iloc[0] == pytest.approx(1.0)
    assert ranked[1]["feature"].iloc[0] == "morph_pallor_fraction"
    assert ranked[1]["r"].iloc[0] == pytest.approx(-1.0)
    lines = legend_lines(ranked, n_words=1)
    assert lines[0].startswith("red: larger (area r=+1.00")
    assert lines[1].startswith("green: with less central pallor (pallor_fraction r=-1.00")


def test_session_colours_name_the_feature_that_drives_the_first_colour():
    rng = np.random.default_rng(4)
    n = 120
    size = rng.normal(0, 1, n)
    table = pd.DataFrame({
        "label": np.arange(1, n + 1), "counted": True,
        "morph_area": 100 + 30 * size, "morph_elongation": rng.normal(1.1, 0.05, n),
        "morph_od_mean": rng.normal(0.3, 0.02, n)})
    direction = rng.normal(0, 1, 32)
    vectors = np.outer(size, direction) * 5 + rng.normal(0, 0.3, (n, 32))
    result = session_colours(table, vectors, "embedding")
    assert result.legend[0].startswith("red: larger") or result.legend[0].startswith(
        "red: smaller")
    assert len(result.legend) == 3 and result.colours.colours.shape == (n, 3)
    red = result.colours.colours[:, 0]
    assert abs(np.corrcoef(red, size)[0, 1]) > 0.9
