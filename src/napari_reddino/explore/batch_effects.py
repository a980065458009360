"""Batch-effect metrics: does the embedding group cells by subject (bad) or by class (good)?

- subject silhouette (scikit-learn, cosine): near 0 or below = subjects mixed; high = batch effect;
- iLISI: inverse Simpson index of subjects among each cell's k nearest neighbors, scaled to
  [0, 1] by the number of subjects (1 = neighborhoods as mixed as they can be, 0 = one subject);
- subject entropy of neighborhoods (normalized by log of the number of subjects);
- kBET-like rejection rate: share of neighborhoods whose subject counts a chi-square test rejects
  against the global subject proportions (alpha 0.05; high = batch effect);
- where classes exist: class silhouette and k-NN class purity (high = classes separate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.cell_table import unlabeled_mask

_SILHOUETTE_MAX = 5000  # silhouette needs all pairwise distances: score a subsample above this


@dataclass
class BatchReport:
    """Per-cell metrics aggregated per subject (``per_subject``), per class and overall."""

    per_subject: pd.DataFrame
    summary: dict
    per_class: pd.DataFrame | None = None

    def to_frame(self) -> pd.DataFrame:
        """One long table (scope, group, metric, value) for CSV export or a report."""
        parts = [
            self.per_subject.reset_index(names="group").melt(
                id_vars="group", var_name="metric"
            ).assign(scope="subject")
        ]
        if self.per_class is not None:
            parts.append(
                self.per_class.reset_index(names="group").melt(
                    id_vars="group", var_name="metric"
                ).assign(scope="class")
            )
        overall = pd.DataFrame(
            {"scope": "overall", "group": "all", "metric": list(self.summary),
             "value": list(self.summary.values())}
        )
        long = pd.concat([*parts, overall], ignore_index=True)
        return long[["scope", "group", "metric", "value"]]


def neighbor_indices(vectors: np.ndarray, k: int) -> np.ndarray:
    """(N, k) indices of each cell's k nearest other cells by cosine distance."""
    from napari_reddino.explore.neighbors import neighbor_graph

    return neighbor_graph(vectors, k, metric="cosine").others(k)[0]


def _composition(neighbor_groups: np.ndarray, n_groups: int) -> np.ndarray:
    """(N, n_groups) counts of each group among each cell's neighbors."""
    n = neighbor_groups.shape[0]
    flat = (np.arange(n)[:, None] * n_groups + neighbor_groups).ravel()
    return np.bincount(flat, minlength=n * n_groups).reshape(n, n_groups)


def _silhouette(vectors, groups, random_state) -> np.ndarray:
    """Per-cell cosine silhouette; NaN for cells outside the scored subsample."""
    from sklearn.metrics import silhouette_samples

    rows = np.arange(len(vectors))
    if rows.size > _SILHOUETTE_MAX:
        rows = np.sort(np.random.default_rng(random_state).choice(rows, _SILHOUETTE_MAX, False))
    scores = np.full(len(vectors), np.nan)
    if np.unique(groups[rows]).size >= 2:
        scores[rows] = silhouette_samples(vectors[rows], groups[rows], metric="cosine")
    return scores


def subject_mixing(
    neighbor_subjects: np.ndarray, n_subjects: int, subject_share: np.ndarray | None = None
) -> pd.DataFrame:
    """Per-cell iLISI (scaled), neighborhood subject entropy and kBET-like rejection.

    ``subject_share``: each subject's share of all cells, what a well-mixed neighborhood holds
    (default: the shares among all neighborhoods).
    """
    from scipy.stats import chi2

    counts = _composition(neighbor_subjects, n_subjects)
    k = counts.sum(axis=1, keepdims=True)
    share = counts / k
    inverse_simpson = 1.0 / (share**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(share > 0, share * np.log(share), 0.0).sum(axis=1)
    global_share = counts.sum(axis=0) / counts.sum() if subject_share is None else subject_share
    expected = k * global_share[None, :]
    statistic = ((counts - expected) ** 2 / np.where(expected > 0, expected, 1)).sum(axis=1)
    p_value = chi2.sf(statistic, df=n_subjects - 1)
    return pd.DataFrame({
        "ilisi": (inverse_simpson - 1.0) / (n_subjects - 1.0),
        "subject_entropy": entropy / np.log(n_subjects),
        "kbet_rejected": p_value < 0.05,
    })


def batch_metrics(vectors, subjects, classes=None, *, k: int = DEFAULTS.batch_k,
                  random_state: int = DEFAULTS.random_state,
                  max_cells: int | None = None, graph=None) -> BatchReport:
    """Subject mixing and class separation of ``vectors`` (N, D), one subject per cell.

    ``classes`` (optional, ``None`` / ``""`` = unlabeled) adds class silhouette and purity.
    Neighborhoods come from ``graph`` (a :class:`~napari_reddino.explore.neighbors.NeighborGraph`
    of these cells, e.g. the one the map used) or else the shared graph of ``vectors``
    (:func:`~.neighbors.feature_graph`, cached). ``max_cells``: score a random
    subsample of that size instead (``summary["n_scored"]`` says how many).
    """
    from napari_reddino.explore.neighbors import DEFAULT_K, feature_graph

    x = np.asarray(vectors, dtype=np.float32)
    subjects = np.asarray(subjects, dtype=object).astype(str)
    if x.ndim != 2 or x.shape[0] != subjects.shape[0]:
        raise ValueError(
            f"vectors {x.shape} and subjects ({subjects.shape[0]}) must have one row per cell"
        )
    if not np.all(np.isfinite(x)):
        raise ValueError("vectors contain NaN / inf; re-run the embedding")
    subject_names, subject_codes = np.unique(subjects, return_inverse=True)
    if subject_names.size < 2:
        raise ValueError("batch metrics compare subjects: the cells come from only one subject")
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be between 1 and {x.shape[0] - 1} (cells - 1), got {k}")
    n_cells = x.shape[0]
    if classes is not None and len(classes) != n_cells:
        raise ValueError(f"classes has {len(classes)} entries for {n_cells} cells")
    if graph is not None and len(graph.indices) != n_cells:
        raise ValueError(f"the neighbor graph has {len(graph.indices)} cells, not {n_cells}")
    if max_cells is not None and n_cells > max_cells:
        rows = np.sort(np.random.default_rng(random_state).choice(n_cells, max_cells, False))
        x, subjects, subject_codes = x[rows], subjects[rows], subject_codes[rows]
        classes = None if classes is None else np.asarray(classes, dtype=object)[rows]
        graph = None
    if graph is None:
        graph = feature_graph(x, min(max(k, DEFAULT_K), x.shape[0] - 1),
                              random_state=random_state)
    neighbors = graph.others(k)[0]
    share = np.bincount(subject_codes, minlength=subject_names.size) / subject_codes.size
    per_cell = subject_mixing(subject_codes[neighbors], subject_names.size, share)
    per_cell["subject"] = subjects
    per_cell["subject_silhouette"] = _silhouette(x, subject_codes, random_state)
    per_subject = per_cell.groupby("subject").agg(
        n_cells=("ilisi", "size"), subject_silhouette=("subject_silhouette", "mean"),
        ilisi=("ilisi", "mean"), subject_entropy=("subject_entropy", "mean"),
        kbet_rejection=("kbet_rejected", "mean"),
    )
    summary = {
        "n_cells": int(n_cells), "n_scored": int(x.shape[0]),
        "n_subjects": int(subject_names.size), "k": int(k),
        "subject_silhouette": float(np.nanmean(per_cell["subject_silhouette"])),
        "ilisi": float(per_cell["ilisi"].mean()),
        "subject_entropy": float(per_cell["subject_entropy"].mean()),
        "kbet_rejection": float(per_cell["kbet_rejected"].mean()),
    }
    per_class = None
    if classes is not None:
        per_class = _class_separation(x, classes, neighbors, random_state)
        if per_class is not None:
            weights = per_class["n_cells"] / per_class["n_cells"].sum()
            summary["class_silhouette"] = float((per_class["class_silhouette"] * weights).sum())
            summary["class_purity"] = float((per_class["class_purity"] * weights).sum())
    return BatchReport(per_subject, summary, per_class)


def _class_separation(x, classes, neighbors, random_state) -> pd.DataFrame | None:
    """Per-class silhouette and k-NN purity over the labeled cells (None if < 2 classes)."""
    classes = np.asarray(classes, dtype=object)
    if classes.shape[0] != x.shape[0]:
        raise ValueError(f"classes has {classes.shape[0]} entries for {x.shape[0]} cells")
    labeled = ~unlabeled_mask(classes)
    names, codes = np.unique(classes[labeled].astype(str), return_inverse=True)
    if names.size < 2:
        return None
    all_codes = np.full(x.shape[0], -1)
    all_codes[labeled] = codes
    silhouette = _silhouette(x[labeled], codes, random_state)
    neighbor_codes = all_codes[neighbors[labeled]]
    known = neighbor_codes >= 0
    same = (neighbor_codes == codes[:, None]) & known
    purity = same.sum(axis=1) / np.maximum(known.sum(axis=1), 1)
    frame = pd.DataFrame({"class": names[codes], "class_silhouette": silhouette,
                          "class_purity": np.where(known.any(axis=1), purity, np.nan)})
    return frame.groupby("class").agg(
        n_cells=("class_purity", "size"), class_silhouette=("class_silhouette", "mean"),
        class_purity=("class_purity", "mean"),
    )
