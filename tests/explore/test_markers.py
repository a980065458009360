"""What marks a cluster: ranked features and a sentence a hematologist reads (#25 item 3)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.explore.markers import describe, group_markers, rank_features
from napari_reddino.morphology.features import FEATURE_NAMES


def _cells(n: int = 120, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({f"morph_{name}": rng.normal(10, 1, n) for name in FEATURE_NAMES})
    group = np.arange(n) < n // 4
    table.loc[group, "morph_area"] += 4  # the group: larger ...
    table.loc[group, "morph_elongation"] += 3  # ... more elongated ...
    table.loc[group, "morph_pallor_fraction"] -= 2.5  # ... with less central pallor
    return table, group


def test_the_planted_differences_rank_first_with_their_direction():
    table, group = _cells()
    ranked = rank_features(table, group)
    assert set(ranked["feature"].head(3)) == {"area", "elongation", "pallor_fraction"}
    by_name = ranked.set_index("feature")
    assert by_name.loc["area", "effect"] > 0.4 and by_name.loc["pallor_fraction", "effect"] < -0.4
    assert by_name.loc["area", "pvals_adj"] < 1e-6
    assert by_name.loc["ring_3", "pvals_adj"] > 0.01  # noise is not significant


def test_the_sentence_says_what_was_planted_and_nothing_else():
    table, group = _cells()
    text = describe(rank_features(table, group))
    assert text.endswith("than the rest")
    assert {w.strip() for w in text.removesuffix(" than the rest").split(",")} == {
        "larger", "more elongated", "with less central pallor"}
    text = describe(rank_features(table, np.arange(len(table)) % 2 == 0))
    assert text == "like the rest of the cells"


def test_group_markers_matches_scanpy_rank_genes_groups_order():
    sc = pytest.importorskip("scanpy")
    import anndata

    table, group = _cells(seed=1)
    clusters = np.where(group, "0", "1")
    markers = group_markers(table, clusters)
    assert list(markers["group"]) == ["0", "1"]
    assert markers.loc[0, "n_cells"] == group.sum()
    adata = anndata.AnnData(X=table.to_numpy(), obs=pd.DataFrame(
        {"cluster": pd.Categorical(clusters)}, index=[str(i) for i in range(len(table))]),
        var=pd.DataFrame(index=list(FEATURE_NAMES)))
    sc.tl.rank_genes_groups(adata, "cluster", method="wilcoxon")
    scanpy_top = set(pd.DataFrame(adata.uns["rank_genes_groups"]["names"])["0"].head(3))
    ours = rank_features(table, group)
    assert set(ours[ours["effect"] > 0]["feature"].head(2)) <= scanpy_top


def test_a_group_needs_cells_on_both_sides():
    table, _ = _cells(n=10)
    with pytest.raises(ValueError, match="both sides"):
        rank_features(table, np.ones(10, bool))
