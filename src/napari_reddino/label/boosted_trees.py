"""Gradient-boosted trees kept as plain arrays: fitted by scikit-learn, saved as ``.npz``.

Why not a pickle: loading a pickle runs code, so a model file passed around a lab would be a way
in. The fitted trees of ``HistGradientBoostingClassifier`` are flat node records (feature,
threshold, children, leaf value), which an ``.npz`` holds without pickling; prediction walks them
in numpy, so the fitted model and the loaded one give bit-identical scores.
"""

from __future__ import annotations

import numpy as np

#: node fields kept (scikit-learn's PREDICTOR_RECORD_DTYPE minus training-only ones)
_FIELDS = ("value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right",
           "is_leaf")
_CHUNK = 4096


def fit_trees(x: np.ndarray, codes: np.ndarray, n_classes: int, *, sample_weight=None,
              max_iter: int = 300, learning_rate: float = 0.08, max_leaf_nodes: int = 31,
              l2_regularization: float = 1.0, random_state: int = 0) -> dict:
    """Fit multiclass boosted trees on ``x`` (rows) and class ``codes`` (0..n_classes-1).

    Returns the arrays of :func:`tree_scores`. Every class must appear in ``codes`` (the
    caller checks); early stopping is off so a refit on the same rows gives the same trees.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    model = HistGradientBoostingClassifier(
        max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=max_leaf_nodes,
        l2_regularization=l2_regularization, early_stopping=False, random_state=random_state)
    model.fit(np.asarray(x, np.float64), np.asarray(codes), sample_weight=sample_weight)
    if list(model.classes_) != list(range(n_classes)):
        raise ValueError(f"every class needs training cells; got codes {list(model.classes_)}")
    return export_trees(model)


def export_trees(model) -> dict:
    """The trees of a fitted multiclass ``HistGradientBoostingClassifier`` as arrays."""
    nodes, roots, tree_class = [], [], []
    offset = 0
    for iteration in model._predictors:  # one tree per class per boosting iteration
        for k, predictor in enumerate(iteration):
            record = predictor.nodes
            local = {name: record[name].copy() for name in _FIELDS}
            leaf = local["is_leaf"].astype(bool)
            local["left"] = np.where(leaf, 0, local["left"].astype(np.int64) + offset)
            local["right"] = np.where(leaf, 0, local["right"].astype(np.int64) + offset)
            nodes.append(local)
            roots.append(offset)
            tree_class.append(k)
            offset += len(record)
    out = {f"node_{name}": np.concatenate([n[name] for n in nodes]) for name in _FIELDS}
    out["node_left"] = out["node_left"].astype(np.int64)
    out["node_right"] = out["node_right"].astype(np.int64)
    out["node_feature_idx"] = out["node_feature_idx"].astype(np.int64)
    out["node_is_leaf"] = out["node_is_leaf"].astype(bool)
    out["node_missing_go_to_left"] = out["node_missing_go_to_left"].astype(bool)
    out["tree_root"] = np.asarray(roots, np.int64)
    out["tree_class"] = np.asarray(tree_class, np.int64)
    out["baseline"] = np.asarray(model._baseline_prediction, np.float64).reshape(-1)
    if len(out["baseline"]) == 1:  # two classes: one tree per iteration scores class 1
        out["baseline"] = np.array([0.0, out["baseline"][0]])
        out["tree_class"][:] = 1
    return out


def tree_scores(trees: dict, x: np.ndarray) -> np.ndarray:
    """Raw class scores (logits, N x n_classes) of rows ``x``: baseline + the leaves reached."""
    x = np.asarray(x, np.float64)
    baseline = trees["baseline"]
    scores = np.tile(baseline, (len(x), 1))
    feature, threshold = trees["node_feature_idx"], trees["node_num_threshold"]
    left, right, leaf = trees["node_left"], trees["node_right"], trees["node_is_leaf"]
    missing_left, value = trees["node_missing_go_to_left"], trees["node_value"]
    roots, tree_class = trees["tree_root"], trees["tree_class"]
    for start in range(0, len(x), _CHUNK):
        rows = x[start:start + _CHUNK]
        at = np.repeat(roots[:, None], len(rows), axis=1)  # (trees, rows) node index
        columns = np.arange(len(rows))[None, :]
        while True:
            inner = ~leaf[at]
            if not inner.any():
                break
            values = rows[columns, feature[at]]
            go_left = np.where(np.isnan(values), missing_left[at], values <= threshold[at])
            at = np.where(inner, np.where(go_left, left[at], right[at]), at)
        leaves = value[at]  # (trees, rows)
        for k in range(len(baseline)):
            scores[start:start + len(rows), k] += leaves[tree_class == k].sum(axis=0)
    return scores
