"""One colour per cell: a PCA-3 of the cell vectors of every open smear, painted into the cells.

The patch overlay (``overlay.pca_rgb``, ``fine_grid``) colours 7-14 px tiles, fitted per smear:
the colour varies inside a cell (rim and centre differ more than cells do) and the same axes
mean different things on two smears, so one cell type comes out in several colours. Here every
cell is one point (its embedding vector, as the explorer compares cells), one PCA is fitted on
the cells of all smears together, and each cell is painted one colour: the same cell type reads
as the same colour across smears. What each colour follows is said by the morphology features
most correlated with its component (:func:`correlated_features`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

PERCENTILES = (2.0, 98.0)  # each component stretched between these over the fitted cells
CHANNELS = ("red", "green", "blue")


@dataclass
class CellColours:
    """Per-cell RGB in [0, 1] (row i = cell i of the vectors given) and what made them."""

    colours: np.ndarray  # (N, 3) float32
    scores: np.ndarray  # (N, 3) principal component scores (before the stretch)
    explained: np.ndarray  # (3,) fraction of the (standardized) variance per component
    fitted: np.ndarray  # (N,) bool: the cells the PCA and the stretch were fitted on


def cell_colours(vectors: np.ndarray, fit_on: np.ndarray | None = None, *,
                 standardize: bool = False, percentiles=PERCENTILES,
                 seed: int = 0) -> CellColours:
    """PCA-3 colours of cell vectors (N, D), fitted on the ``fit_on`` cells (default: all).

    ``standardize`` puts every dimension on unit variance over the fitted cells first (the
    explorer's spaces are scaled already; for raw vectors it keeps a few high-variance
    dimensions from taking all three colours). Each component is then stretched between
    ``percentiles`` of the fitted cells and clipped: one outlier does not wash out the others.
    The sign of each component is fixed (largest loading positive) so that the same data always
    gives the same colours.
    """
    from sklearn.decomposition import PCA

    vectors = np.asarray(vectors, np.float64)
    if vectors.ndim != 2:
        raise ValueError(f"vectors must be (cells, dims), got shape {vectors.shape}")
    fit_on = np.ones(len(vectors), bool) if fit_on is None else np.asarray(fit_on, bool)
    if fit_on.shape != (len(vectors),):
        raise ValueError(f"fit_on must flag each of the {len(vectors)} cells")
    if fit_on.sum() < 4:
        raise ValueError(f"{int(fit_on.sum())} cells to fit on: a colour PCA needs at least 4")
    finite = np.isfinite(vectors).all(axis=1)
    fit_on = fit_on & finite
    vectors = np.where(np.isfinite(vectors), vectors, 0.0)
    mean = vectors[fit_on].mean(axis=0)
    scale = vectors[fit_on].std(axis=0) if standardize else np.ones(vectors.shape[1])
    scale = np.where(scale > 1e-12, scale, 1.0)
    x = (vectors - mean) / scale
    pca = PCA(n_components=3, random_state=seed).fit(x[fit_on])
    signs = np.sign(pca.components_[np.arange(3), np.abs(pca.components_).argmax(axis=1)])
    scores = (x @ pca.components_.T) * signs
    low, high = np.percentile(scores[fit_on], percentiles, axis=0)
    span = np.where(high > low, high - low, 1.0)
    colours = np.clip((scores - low) / span, 0.0, 1.0)
    colours[~finite] = 0.5
    return CellColours(colours.astype(np.float32), scores.astype(np.float32),
                       pca.explained_variance_ratio_.astype(np.float32), fit_on)


def paint_cells(labels: np.ndarray, label_ids, colours: np.ndarray,
                alpha: float | np.ndarray = 1.0) -> np.ndarray:
    """(H, W, 4) uint8 RGBA: every pixel of cell ``label_ids[i]`` in ``colours[i]`` at ``alpha``
    (one, or one per cell), the rest (background, cells without a colour) fully transparent."""
    labels = np.asarray(labels)
    label_ids = np.asarray(label_ids, np.int64)
    colours = np.asarray(colours, np.float32)
    if len(label_ids) != len(colours):
        raise ValueError(f"{len(label_ids)} labels for {len(colours)} colours")
    top = int(max(labels.max(initial=0), label_ids.max(initial=0)))
    lut = np.zeros((top + 1, 4), np.uint8)
    keep = label_ids > 0
    lut[label_ids[keep], :3] = np.round(colours[keep, :3] * 255).astype(np.uint8)
    alpha = np.broadcast_to(np.asarray(alpha, np.float32), label_ids.shape)
    lut[label_ids[keep], 3] = np.round(alpha[keep] * 255).astype(np.uint8)
    return lut[np.clip(labels, 0, top)]


def correlated_features(scores: np.ndarray, features: pd.DataFrame, top: int = 3,
                        rows: np.ndarray | None = None) -> list[pd.DataFrame]:
    """For each component (column of ``scores``), the ``top`` feature columns most correlated
    with it (Pearson over ``rows``, default all cells): ``feature``, ``r``, strongest first."""
    rows = np.ones(len(scores), bool) if rows is None else np.asarray(rows, bool)
    numeric = features.select_dtypes(include=[np.number, bool]).astype(np.float64)
    values = numeric.to_numpy()[rows]
    values = np.where(np.isfinite(values), values, np.nan)
    values = np.where(np.isnan(values), np.nanmedian(values, axis=0), values)
    values = values - values.mean(axis=0)
    norms = np.linalg.norm(values, axis=0)
    out = []
    for component in np.asarray(scores, np.float64)[rows].T:
        centered = component - component.mean()
        denominator = norms * max(np.linalg.norm(centered), 1e-12)
        r = np.where(norms > 1e-12, centered @ values / np.where(norms > 0, denominator, 1), 0)
        order = np.argsort(-np.abs(r))[:top]
        out.append(pd.DataFrame({"feature": numeric.columns[order], "r": r[order]}))
    return out
