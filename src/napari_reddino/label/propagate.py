"""k-NN label propagation from a few manually labeled cells to every other cell.

Why not scikit-learn's KNeighborsClassifier: the search is always "a few hundred labeled cells
against every cell", so one float32 matrix product per chunk plus ``argpartition`` beats building
any index (see ``benchmarks/propagation.py``). The votes are the same distance-weighted cosine votes
scikit-learn casts (``weights="distance"``: weight = 1 / cosine distance, exact duplicates win).
Optional label spreading (Zhou et al. 2004) iterates over a sparse k-NN graph of all cells, so
labels can follow the shape of a cluster rather than only the nearest labeled cell.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd

from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.neighbors import unit_rows
from napari_reddino.io.cell_table import unlabeled_mask
from napari_reddino.names import (
    CLASS,
    CLASS_SOURCE,
    CONFIDENCE,
    EMBEDDING_ROW,
    MANUAL,
    PROPAGATED,
    PROPAGATION_METHODS,
)
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

METHODS = PROPAGATION_METHODS
_CHUNK_ROWS = 32768


@dataclass
class Propagation:
    """Per-cell result: class name, confidence in [0, 1], and ``"manual"`` / ``"propagated"``."""

    classes: np.ndarray  # (N,) object, class names
    confidence: np.ndarray  # (N,) float32; 1.0 for manual cells
    source: np.ndarray  # (N,) object, MANUAL or PROPAGATED
    method: str = "knn"  # what voted: "knn" or "logreg" (what "auto" chose)
    scores: dict | None = None  # method -> cross-validated balanced accuracy ("auto" only)
    warning: str = ""  # why the result says little (one class labeled), else empty


def _check_inputs(vectors, classes, k, weighting, metric, class_names):
    vectors = np.asarray(vectors)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"vectors must be an (N, D) matrix, got shape {vectors.shape}")
    if not np.issubdtype(vectors.dtype, np.number):
        raise ValueError(f"vectors must be numeric, got {vectors.dtype}")
    classes = np.asarray(classes, dtype=object)
    if classes.shape != (vectors.shape[0],):
        raise ValueError(
            f"classes has {classes.size} entries but vectors has {vectors.shape[0]} rows"
        )
    if metric != "cosine":
        raise ValueError(f"metric {metric!r} is not supported; use 'cosine'")
    if weighting not in ("distance", "uniform"):
        raise ValueError(f"weighting must be 'distance' or 'uniform', got {weighting!r}")
    if int(k) < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    missing = unlabeled_mask(classes)
    if missing.all():
        raise ValueError("no labeled cells: label at least one cell per class before propagating")
    labeled_names = pd.unique(classes[~missing].astype(str))
    if class_names is not None:
        unknown = sorted({str(c) for c in labeled_names} - {str(c) for c in class_names})
        if unknown:
            raise ValueError(
                f"labels use classes that are not in the class set: {unknown}; "
                f"known classes: {list(class_names)}"
            )
    return np.ascontiguousarray(vectors, dtype=np.float32), classes, missing


def _nearest_labeled(chunk: np.ndarray, labeled_unit: np.ndarray, k: int,
                     center: np.ndarray | None = None):
    """Cosine similarities and indices of the ``k`` most similar labeled cells per row.

    The ranking of a row does not change when the row is scaled, so the selection
    (``argpartition``, faster here than any sort or index) runs on the raw dot products and only
    the ``k`` winners are divided by the row's norm. With ``center`` (``labeled_unit`` then holds
    unit ``labeled - center`` rows) rows are centered algebraically: (x - c)·l = x·l - c·l and
    |x - c|² = |x|² - 2 x·c + |c|², without copying x.
    """
    dots = chunk @ labeled_unit.T
    norms_sq = np.einsum("ij,ij->i", chunk, chunk)
    if center is not None:
        dots -= center @ labeled_unit.T
        norms_sq += center @ center - 2.0 * (chunk @ center)
    if k < dots.shape[1]:
        idx = np.argpartition(dots, dots.shape[1] - k, axis=1)[:, -k:]
    else:
        idx = np.broadcast_to(np.arange(dots.shape[1]), dots.shape)
    norms = np.sqrt(np.maximum(norms_sq, 1e-24))[:, None]
    if not np.all(np.isfinite(norms)):  # NaN / inf anywhere in a row shows up in its norm
        raise ValueError("vectors contain NaN / inf; re-run the embedding")
    sims = np.take_along_axis(dots, idx, axis=1) / norms
    return np.clip(sims, -1.0, 1.0), idx


def _vote(sims: np.ndarray, neighbor_class: np.ndarray, n_classes: int, weighting: str):
    """Distance-weighted votes as scikit-learn casts them: (winner, vote share, mean sim).

    numpy on purpose: the arrays are small (rows x k), where thread start-up costs more than
    the arithmetic.
    """
    if weighting == "uniform":
        weights = np.ones_like(sims)
    else:
        dist = np.maximum(1.0 - sims, 0.0)
        exact = dist <= 0.0
        with np.errstate(divide="ignore"):
            weights = 1.0 / dist
        has_exact = exact.any(axis=1)
        if has_exact.any():  # an exact duplicate of a labeled cell takes all the weight
            weights[has_exact] = exact[has_exact]
    rows = np.arange(sims.shape[0])[:, None]
    votes = np.bincount((rows * n_classes + neighbor_class).ravel(), weights.ravel(),
                        minlength=sims.shape[0] * n_classes).reshape(-1, n_classes)
    winner = votes.argmax(axis=1)
    share = votes[rows[:, 0], winner] / votes.sum(axis=1)
    for_winner = neighbor_class == winner[:, None]
    mean_sim = (sims * for_winner).sum(axis=1) / np.maximum(for_winner.sum(axis=1), 1)
    return winner, share.astype(np.float32), np.clip(mean_sim, 0.0, 1.0)


def iter_propagate(
    vectors,
    classes,
    *,
    k: int = DEFAULTS.propagation_k,
    metric: str = DEFAULTS.metric,
    weighting: str = "distance",
    spreading: bool = DEFAULTS.spreading,
    scale_by_similarity: bool = False,
    center: bool = DEFAULTS.center,
    class_names=None,
    alpha: float = 0.8,
    max_iter: int = 30,
    random_state: int = DEFAULTS.random_state,
    method: str = DEFAULTS.propagation_method,
    graph=None,
    cancel: threading.Event | None = None,
    counted=None,
) -> ProgressGen[Propagation]:
    """Propagate manual labels (``classes``: name per cell, ``None`` / ``""`` = unlabeled).

    Confidence is the winning class's share of the weighted votes of the ``k`` nearest labeled
    cells; ``scale_by_similarity`` multiplies it by their mean cosine similarity, so a cell far
    from every labeled cell is flagged even when its few neighbors agree. With ``spreading`` the
    labels then diffuse over the k-NN graph of all cells (``alpha`` = how far they travel;
    ``graph``: that graph precomputed, e.g. the explorer's, else the shared cached one).
    ``center`` measures cosine around the mean cell instead of the origin: embeddings whose
    vectors all share one large common direction (cosine ~1 everywhere) separate much better.
    ``method="logreg"`` fits a logistic regression on the labeled cells instead (confidence =
    its top class probability); ``"auto"`` picks whichever of the two cross-validates better
    on the labeled cells (see :mod:`napari_reddino.label.classifier`). Defaults: the table in
    :mod:`napari_reddino.defaults`, shared with the CLI and the labeling dock. ``counted``
    (bool per cell): only those vote and get classes, the rest keep any manual label (.counting).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if counted is not None and not np.all(counted):  # only counted cells vote and get classes
        from napari_reddino.label.counting import expand, voting_rows

        rows = voting_rows(classes, counted)
        sub = yield from iter_propagate(
            np.asarray(vectors)[rows], np.asarray(classes, dtype=object)[rows], k=k,
            metric=metric, weighting=weighting, spreading=spreading, center=center,
            scale_by_similarity=scale_by_similarity, class_names=class_names, alpha=alpha,
            max_iter=max_iter, random_state=random_state, method=method, cancel=cancel)
        return Propagation(*expand(sub, classes, rows), sub.method, sub.scores, sub.warning)
    x, classes, missing = _check_inputs(vectors, classes, k, weighting, metric, class_names)
    names, codes = np.unique(classes[~missing].astype(str), return_inverse=True)
    n = x.shape[0]
    labeled_rows = np.flatnonzero(~missing)
    if len(names) < 2:  # one class cannot be told from another: no confidence to give
        if not np.all(np.isfinite(x)):
            raise ValueError("vectors contain NaN / inf; re-run the embedding")
        result = _one_class(names, classes, labeled_rows, n)
        warnings.warn(result.warning, UserWarning, stacklevel=2)
        yield Progress(1, 1, "propagation done (one class only)")
        return result
    scores = None
    if method == "auto":
        from napari_reddino.label.classifier import choose_method

        check_cancel(cancel)
        yield Progress(0, 1, "choosing k-NN or logistic regression by cross-validation")
        method, scores = choose_method(x[labeled_rows], codes, k=int(k), center=center,
                                       weighting=weighting, random_state=random_state,
                                       knn=partial(propagate, method="knn"))
    if method == "logreg":
        from napari_reddino.label.classifier import iter_logreg

        winners, confidence = yield from iter_logreg(x, labeled_rows, codes, len(names),
                                                     random_state=random_state, cancel=cancel)
        return _result(names, winners, confidence, classes, labeled_rows, "logreg", scores)
    k_eff = min(int(k), labeled_rows.size)
    center = x.mean(axis=0, dtype=np.float64).astype(np.float32) if center else None
    labeled_x = x[labeled_rows]
    if not np.all(np.isfinite(labeled_x)):
        raise ValueError("vectors of labeled cells contain NaN / inf; re-run the embedding")
    labeled_unit = unit_rows(labeled_x if center is None else labeled_x - center)
    labeled_codes = codes.astype(np.int64)
    winners = np.empty(n, dtype=np.int64)
    confidence = np.empty(n, dtype=np.float32)
    starts = range(0, n, _CHUNK_ROWS)
    steps = len(starts) + (max_iter if spreading else 0)
    for step, start in enumerate(starts):
        check_cancel(cancel)
        yield Progress(step, steps, "voting among the nearest labeled cells")
        chunk = x[start : start + _CHUNK_ROWS]
        sims, idx = _nearest_labeled(chunk, labeled_unit, k_eff, center)
        winner, share, mean_sim = _vote(sims, labeled_codes[idx], len(names), weighting)
        if scale_by_similarity:
            share = share * mean_sim
        winners[start : start + chunk.shape[0]] = winner
        confidence[start : start + chunk.shape[0]] = share
    if spreading:
        spread = yield from _iter_spread(
            x, codes, labeled_rows, len(names), k=int(k), alpha=alpha, max_iter=max_iter,
            random_state=random_state, cancel=cancel, step0=len(starts), steps=steps,
            graph=graph,
        )
        reached = spread.sum(axis=1) > 0
        winners[reached] = spread[reached].argmax(axis=1)
        confidence[reached] = (spread[reached].max(axis=1) / spread[reached].sum(axis=1))
    yield Progress(steps, steps, "propagation done")
    return _result(names, winners, confidence, classes, labeled_rows, "knn", scores)


def _result(names, winners, confidence, classes, labeled_rows, method, scores) -> Propagation:
    """Manual cells keep their class with confidence 1; the rest get the winner."""
    result_classes = names[winners].astype(object)
    result_classes[labeled_rows] = classes[labeled_rows].astype(str)
    confidence = np.asarray(confidence, np.float32)
    confidence[labeled_rows] = 1.0
    source = np.full(len(winners), PROPAGATED, dtype=object)
    source[labeled_rows] = MANUAL
    return Propagation(result_classes, confidence, source, method, scores)


def _one_class(names, classes, labeled_rows, n: int) -> Propagation:
    """Every cell gets the only labeled class, with an empty (NaN) confidence, not 1.00: with
    nothing to vote against, agreement says nothing."""
    result = _result(names, np.zeros(n, np.int64), np.full(n, np.nan, np.float32), classes,
                     labeled_rows, "knn", None)
    result.warning = (
        f"only one class is labeled ({names[0]!r}, {labeled_rows.size} cell(s)): every cell "
        "gets it and its confidence is left empty; label at least two classes (a few cells "
        "each), then propagate again")
    return result


def propagate(vectors, classes, **kwargs) -> Propagation:
    """Synchronous :func:`iter_propagate`."""
    return run_to_completion(iter_propagate(vectors, classes, **kwargs))


def knn_graph(x: np.ndarray, k: int, *, random_state: int = 0, graph=None):
    """Symmetric sparse cosine-similarity k-NN graph of all cells (self excluded).

    From ``graph`` (a :class:`~napari_reddino.explore.neighbors.NeighborGraph` of these cells) or
    else the shared graph of ``x`` (:func:`~..explore.neighbors.feature_graph`, cached:
    the one the explorer's map, Leiden and batch metrics use for the same cells).
    """
    from napari_reddino.explore.neighbors import DEFAULT_K, feature_graph

    k = min(k, x.shape[0] - 1)
    if graph is None:
        graph = feature_graph(x, max(k, min(DEFAULT_K, x.shape[0] - 1)),
                              random_state=random_state)
    if len(graph.indices) != x.shape[0] or graph.k < k:
        raise ValueError(f"the neighbor graph ({len(graph.indices)} cells, {graph.k} "
                         f"neighbors) does not fit {x.shape[0]} cells and k={k}")
    return graph.adjacency(k, weighted=True)


def _iter_spread(x, codes, labeled_rows, n_classes, *, k, alpha, max_iter, random_state,
                 cancel, step0, steps, graph=None):
    """Zhou et al. label spreading F <- alpha S F + (1 - alpha) Y on the normalized graph."""
    from scipy import sparse

    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    yield Progress(step0, steps, "building the k-NN graph of all cells")
    graph = knn_graph(x, k, random_state=random_state, graph=graph)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    inv_sqrt = np.zeros_like(degree)
    inv_sqrt[degree > 0] = 1.0 / np.sqrt(degree[degree > 0])
    norm_graph = sparse.diags(inv_sqrt) @ graph @ sparse.diags(inv_sqrt)
    seed = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    seed[labeled_rows, codes] = 1.0
    spread = seed.copy()
    for it in range(max_iter):
        check_cancel(cancel)
        yield Progress(step0 + it, steps, f"spreading labels, iteration {it + 1}")
        updated = alpha * (norm_graph @ spread) + (1.0 - alpha) * seed
        converged = np.abs(updated - spread).max() < 1e-6
        spread = updated
        if converged:
            break
    return spread


def review_order(features: pd.DataFrame, counted_only: bool = DEFAULTS.counted_only) -> pd.Index:
    """Index of the propagated cells, lowest confidence first (ties keep table order)."""
    needed = {CLASS_SOURCE, CONFIDENCE}
    if not needed <= set(features.columns):
        raise ValueError(
            f"review_order needs columns {sorted(needed)}; the table has "
            f"{sorted(features.columns)}: run propagation first"
        )
    from napari_reddino.label.counting import counted_rows

    propagated = features[(features[CLASS_SOURCE].astype(str) == PROPAGATED).to_numpy()
                          & counted_rows(features, counted_only)]
    return propagated.sort_values(CONFIDENCE, kind="stable", na_position="last").index


def iter_propagate_features(
    features: pd.DataFrame, vectors, *, row_column: str = EMBEDDING_ROW,
    space: str = DEFAULTS.space, counted_only: bool = DEFAULTS.counted_only, **kwargs
) -> ProgressGen[pd.DataFrame]:
    """Propagate the table's manual labels; returns a copy with class / source / confidence.

    Manual cells are those with ``class_source == "manual"`` and a class (every classed cell
    when the table has no ``class_source`` yet). ``features[row_column]`` points into
    ``vectors``; ``space`` (``embedding`` / ``morphology`` / ``both``, see
    :mod:`napari_reddino.explore.spaces`) says what distances are measured in (the default one
    falls back to the embedding on tables without morphology); only counted cells vote and
    get classes unless ``counted_only`` is off (:mod:`.counting`); ``kwargs`` go to
    :func:`iter_propagate`.
    """
    from napari_reddino.explore.spaces import resolve_space, space_matrix

    space = resolve_space(space, features, vectors)
    needed = (CLASS,) if space == "morphology" else (row_column, CLASS)
    for column in needed:
        if column not in features.columns:
            raise ValueError(
                f"the cell table has no '{column}' column (has {list(features.columns)}); "
                + ("embed the cells first" if column == row_column else "label some cells first")
            )
    if space != "morphology":
        vectors = np.asarray(vectors)
        rows = pd.to_numeric(features[row_column], errors="coerce").to_numpy()
        bad = ~np.isfinite(rows) | (rows < 0) | (rows >= len(vectors))
        if bad.any():
            keys = features.loc[bad, ["image", "label"]].head(5).to_records(index=False).tolist()
            raise ValueError(
                f"{int(bad.sum())} cell(s) have no embedding (e.g. (image, label) {keys}); "
                "re-run the embedding for these images"
            )
    x = space_matrix(features, vectors, space, row_column=row_column)
    from napari_reddino.label.counting import counted_rows

    result = yield from iter_propagate(x, voting_classes(features),
                                       counted=counted_rows(features, counted_only), **kwargs)
    table = features.copy()
    table[CLASS] = result.classes
    table[CLASS_SOURCE] = result.source
    table[CONFIDENCE] = result.confidence
    return table


def voting_classes(table: pd.DataFrame, key: str = CLASS) -> np.ndarray:
    """The classes that vote: ``table[key]`` (None where empty), and for ``"class"`` only the
    manual ones once a propagation has written ``class_source`` (its guesses never vote)."""
    column = table[key]
    classes = column.astype(object).where(column.notna(), None).to_numpy()
    if key == CLASS and CLASS_SOURCE in table.columns:
        is_manual = table[CLASS_SOURCE].astype(str).to_numpy() == MANUAL
        classes = np.where(is_manual, classes, None)
    return classes


def propagate_features(features: pd.DataFrame, vectors, **kwargs) -> pd.DataFrame:
    """Synchronous :func:`iter_propagate_features`."""
    return run_to_completion(iter_propagate_features(features, vectors, **kwargs))
