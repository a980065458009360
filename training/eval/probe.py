"""Frozen-feature classifiers, evaluation splits, metrics and the Table-1-style summary.

The protocol of RedDino's Table 1: a linear probe (logistic regression on standardized features)
and 1-NN / 20-NN (cosine) on frozen CLS features, scored by weighted F1, balanced accuracy and
accuracy, as mean +- std over the folds of a split.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning, UndefinedMetricWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

CLASSIFIERS = {"linear_probe": "linear probe", "knn1": "1-NN", "knn20": "20-NN"}
METRICS = {
    "weighted_f1": "weighted F1",
    "balanced_accuracy": "balanced acc",
    "accuracy": "accuracy",
}
PROTOCOLS = ("loso", "kfold")


def make_classifier(name: str, *, n_train: int, seed: int):
    """A fresh scikit-learn classifier; k-NN's k is capped by the training set size."""
    if name == "linear_probe":
        return make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=2000, C=1.0, random_state=seed)
        )
    if name.startswith("knn"):
        k = min(int(name[3:]), n_train)
        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    raise ValueError(f"unknown classifier {name!r}: use one of {list(CLASSIFIERS)}")


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """The three Table-1 metrics for one test fold."""
    with warnings.catch_warnings():
        # Classes absent from a held-out source only make these metrics ill-defined per class.
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)
        return {
            "weighted_f1": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
            "accuracy": float(accuracy_score(y_true, y_pred)),
        }


def make_splits(
    protocol: str, labels: np.ndarray, sources: np.ndarray, *, n_folds: int = 5, seed: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(fold name, train rows, test rows)`` for leave-one-source-out or stratified k-fold."""
    if protocol == "loso":
        unique_sources = sorted(set(sources.tolist()))
        if len(unique_sources) < 2:
            raise ValueError(
                f"leave-one-source-out needs at least 2 sources, found {unique_sources}; "
                "use --protocol kfold or a <source>/<class>/ folder with several sources"
            )
        return [
            (f"test={source}", np.flatnonzero(sources != source), np.flatnonzero(sources == source))
            for source in unique_sources
        ]
    if protocol == "kfold":
        if n_folds < 2:
            raise ValueError(f"k-fold needs at least 2 folds, got {n_folds}")
        _, counts = np.unique(labels, return_counts=True)
        if counts.max() < n_folds:
            raise ValueError(
                f"{n_folds}-fold stratification needs a class with at least {n_folds} cells; "
                f"the largest has {int(counts.max())}: lower --folds"
            )
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            # Classes rarer than n_folds are simply absent from some test folds.
            warnings.simplefilter("ignore", UserWarning)
            folds = list(splitter.split(np.zeros(len(labels)), labels))
        return [(f"fold={i}", train, test) for i, (train, test) in enumerate(folds)]
    raise ValueError(f"unknown protocol {protocol!r}: use one of {PROTOCOLS}")


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (cosine k-NN); compute once, pass to every fold."""
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms == 0, 1.0, norms)


def knn_predict(unit: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                k: int) -> np.ndarray:  # fmt: skip
    """Cosine k-NN votes from unit rows: scikit-learn's brute uniform k-NN, without its
    per-fold refit and validation (a tie goes to the first class in sorted order, as there)."""
    classes, encoded = np.unique(labels[train], return_inverse=True)
    distance = 1.0 - unit[test] @ unit[train].T
    k = min(k, len(train))
    nearest = np.argpartition(distance, k - 1, axis=1)[:, :k] if k < len(train) \
        else np.broadcast_to(np.arange(len(train)), (len(test), len(train)))
    votes = np.zeros((len(test), len(classes)), dtype=np.int64)
    np.add.at(votes, (np.arange(len(test))[:, None], encoded[nearest]), 1)
    return classes[votes.argmax(axis=1)]


def evaluate_split(
    features: np.ndarray, labels: np.ndarray, train: np.ndarray, test: np.ndarray, *,
    seed: int = 0, unit: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """Fit every classifier on ``train`` rows and score it on ``test`` rows.

    ``unit``: :func:`unit_rows` of ``features``, computed once for all folds. The probe runs on
    one BLAS thread: on a 1,000-cell fold the threads' start-up and spinning (worse beside
    PyTorch's OpenMP pool) cost 17x the arithmetic, which made a 244-fold LOSO take >17 min.
    """
    if len(set(labels[train].tolist())) < 2:
        raise ValueError("a training fold holds a single class; the classifiers need at least 2")
    unit = unit_rows(features) if unit is None else unit
    results = {}
    for name in CLASSIFIERS:
        if name.startswith("knn"):
            predicted = knn_predict(unit, labels, train, test, int(name[3:]))
        else:
            classifier = make_classifier(name, n_train=len(train), seed=seed)
            with warnings.catch_warnings(), threadpool_limits(limits=1):
                warnings.simplefilter("ignore", ConvergenceWarning)
                classifier.fit(features[train], labels[train])
                predicted = classifier.predict(features[test])
        results[name] = score(labels[test], predicted)
    return results


def summarize(folds: list[dict]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and (population) std over folds of each classifier's metrics."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for name in CLASSIFIERS:
        summary[name] = {}
        for metric in METRICS:
            values = np.asarray([fold["results"][name][metric] for fold in folds])
            summary[name][metric] = {"mean": float(values.mean()), "std": float(values.std())}
    return summary


def format_table(summary: dict, *, title: str = "") -> str:
    """A plain-text table like RedDino's Table 1: one row per classifier, mean +- std."""
    header = ["classifier", *METRICS.values()]
    rows = [
        [
            CLASSIFIERS[name],
            *(f"{summary[name][m]['mean']:.3f} ± {summary[name][m]['std']:.3f}" for m in METRICS),
        ]
        for name in CLASSIFIERS
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [title] if title else []
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return "\n".join(lines)
