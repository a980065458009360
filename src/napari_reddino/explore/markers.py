"""What sets a group of cells apart, ranked and said in words ("larger, paler, more elongated").

A cluster on a map means nothing to a hematologist until it is named by what its cells share.
For each group (a cluster, a class, a lasso selection) every morphology feature is compared
with the rest of the cells by a Wilcoxon rank-sum test, as ``scanpy.tl.rank_genes_groups``
does on ``.X`` (Benjamini-Hochberg adjusted); the effect size is the AUC (the chance that a cell
of the group has the larger value), so it reads the same whatever the unit. The strongest
features with a word pair below become the group's description.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import false_discovery_control, mannwhitneyu

from napari_reddino.morphology.features import COLUMN_PREFIX, feature_columns

#: feature -> (word when the group is higher, word when lower); features without words are
#: ranked but not put into the sentence (several features say the same thing)
WORDS = {
    "area": ("larger", "smaller"),
    "elongation": ("more elongated", "rounder"),
    "pallor_fraction": ("paler in the center", "with less central pallor"),
    "pallor_rim_ratio": ("with a darker center", "with more central pallor"),
    "target_score": ("target-like (a stained center in the pallor)", "without a target center"),
    "spicule_count": ("spiculated", "with fewer spicules"),
    "tail_ratio": ("tailed (teardrop-like)", "without tails"),
    "solidity": ("more regular in outline", "notched or fragmented"),
    "asymmetry": ("asymmetric", "more symmetric"),
    "od_mean": ("more densely stained", "paler (hypochromic)"),
    "dark_dot_count": ("with more inclusions", "with fewer inclusions"),
    "pallor_elongation": ("with a slit-like pallor", "with a round pallor"),
    "circularity": ("more disc-like", "irregular in outline"),
    "radius_cv": ("irregular in radius", "even in radius"),
}
MIN_EFFECT = 0.15  # |AUC - 0.5| below this is not worth a word


def rank_features(table: pd.DataFrame, in_group: np.ndarray,
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Features ranked by how strongly ``in_group`` cells differ from the others.

    Columns: ``feature`` (without prefix), ``auc`` (0.5 = no difference), ``effect``
    (``auc - 0.5``), ``median_group``, ``median_rest``, ``pvals_adj``; strongest first.
    """
    in_group = np.asarray(in_group, dtype=bool)
    if len(in_group) != len(table):
        raise ValueError(f"{len(in_group)} flags for {len(table)} cells")
    columns = list(columns) if columns is not None else feature_columns(table.columns)
    if not columns:
        raise ValueError("the cells have no morphology columns (morph_*) to compare")
    n_in, n_out = int(in_group.sum()), int((~in_group).sum())
    if n_in == 0 or n_out == 0:
        raise ValueError(f"a group needs cells on both sides: {n_in} in it, {n_out} outside")
    values = table[columns].to_numpy(dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.nan)
    fill = np.nanmedian(values, axis=0)
    values = np.where(np.isnan(values), np.nan_to_num(fill), values)
    u, p = mannwhitneyu(values[in_group], values[~in_group], axis=0, method="asymptotic")
    auc = np.asarray(u, dtype=float) / (n_in * n_out)
    p = np.nan_to_num(np.asarray(p, dtype=float), nan=1.0)
    ranked = pd.DataFrame({
        "feature": [c.removeprefix(COLUMN_PREFIX) for c in columns],
        "auc": auc, "effect": auc - 0.5,
        "median_group": np.median(values[in_group], axis=0),
        "median_rest": np.median(values[~in_group], axis=0),
        "pvals_adj": false_discovery_control(p),
    })
    order = np.argsort(-np.abs(ranked["effect"].to_numpy()), kind="stable")
    return ranked.iloc[order].reset_index(drop=True)


def describe(ranked: pd.DataFrame, n_words: int = 3, alpha: float = 0.05) -> str:
    """The group in words from :func:`rank_features`: "larger, paler in the center than the rest".

    Only significant features with a clear effect and a word pair are used; "like the rest" when
    none is.
    """
    words = []
    for row in ranked.itertuples():
        if len(words) == n_words:
            break
        if row.feature not in WORDS or abs(row.effect) < MIN_EFFECT or row.pvals_adj > alpha:
            continue
        higher, lower = WORDS[row.feature]
        words.append(higher if row.effect > 0 else lower)
    return f"{', '.join(words)} than the rest" if words else "like the rest of the cells"


def group_markers(table: pd.DataFrame, groups, n_features: int = 5) -> pd.DataFrame:
    """Per group of ``groups`` (e.g. the ``cluster`` column): its top features and sentence.

    Columns: ``group``, ``n_cells``, ``description``, ``top_features`` (``"area +0.41, ..."``).
    Groups without cells on both sides are left out.
    """
    groups = pd.Series(np.asarray(groups), index=table.index)
    rows = []
    for group in sorted(groups.dropna().unique(), key=str):
        flags = (groups == group).to_numpy()
        if flags.all() or not flags.any():
            continue
        ranked = rank_features(table, flags)
        top = ", ".join(f"{r.feature} {r.effect:+.2f}" for r in ranked.head(n_features)
                        .itertuples())
        rows.append({"group": group, "n_cells": int(flags.sum()),
                     "description": describe(ranked), "top_features": top})
    return pd.DataFrame(rows, columns=["group", "n_cells", "description", "top_features"])
