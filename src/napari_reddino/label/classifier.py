"""Propagation by a classifier fitted on the labeled cells, and the k-NN / classifier choice.

Why beside k-NN: with 20 labels per class a linear boundary in the feature space generalizes
past the few nearest labeled cells, while with a handful k-NN is often safer. Which one wins
depends on the cells, so ``method="auto"`` cross-validates both on the labeled cells only
(leave-one-out when every class has at most 5 labels: one fold per label of each class).
"""

from __future__ import annotations

import warnings

import numpy as np

from napari_reddino.progress import Progress, check_cancel

_CHUNK = 32768
_FOLDS = 5


def make_logreg(random_state: int = 0):
    """Standardize, then a class-balanced multinomial logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(
        C=1.0, class_weight="balanced", max_iter=2000, random_state=random_state))


def _fit(x, y, random_state):
    from sklearn.exceptions import ConvergenceWarning

    model = make_logreg(random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def iter_logreg(x, labeled_rows, codes, n_classes, *, random_state=0, cancel=None):
    """Winner code and top probability of every row of ``x``, from labeled rows' ``codes``."""
    n = len(x)
    winners = np.zeros(n, np.int64)
    confidence = np.ones(n, np.float32)
    if n_classes < 2:  # one class labeled: nothing to choose between
        return winners, confidence
    model = _fit(x[labeled_rows], codes, random_state)
    known = np.asarray(model.classes_)
    starts = range(0, n, _CHUNK)
    for step, start in enumerate(starts):
        check_cancel(cancel)
        yield Progress(step, len(starts), "classifying cells (logistic regression)")
        proba = model.predict_proba(x[start:start + _CHUNK])
        winners[start:start + len(proba)] = known[proba.argmax(axis=1)]
        confidence[start:start + len(proba)] = proba.max(axis=1)
    return winners, confidence


def cv_folds(codes: np.ndarray, random_state: int = 0):
    """Stratified folds over the labeled cells (``None`` when no class has two labels)."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(codes)
    if counts.max() < 2 or (counts > 0).sum() < 2:
        return None
    splitter = StratifiedKFold(n_splits=int(min(_FOLDS, counts.max())), shuffle=True,
                               random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes rarer than the folds
        return list(splitter.split(np.zeros(len(codes)), codes))


def choose_method(x_labeled, codes, *, k=15, center=False, weighting="distance",
                  random_state=0, knn=None) -> tuple[str, dict]:
    """``("knn" | "logreg", {method: balanced accuracy})`` by cross-validation on labeled cells.

    k-NN wins ties and every case too small to judge (no class with two labels). ``knn`` is
    ``propagate.propagate`` (passed in: this module does not import ``propagate``, which imports
    it).
    """
    from sklearn.metrics import balanced_accuracy_score

    codes = np.asarray(codes, np.int64)
    folds = cv_folds(codes, random_state)
    if folds is None:
        return "knn", {}
    if knn is None:
        raise ValueError("choose_method needs knn=napari_reddino.label.propagate.propagate")
    predicted = {"knn": np.empty_like(codes), "logreg": np.empty_like(codes)}
    for train, test in folds:
        masked = np.where(np.isin(np.arange(len(codes)), train), codes.astype(object), None)
        voted = knn(x_labeled, masked, k=k, center=center, weighting=weighting)
        predicted["knn"][test] = voted.classes[test].astype(np.int64)
        if len(np.unique(codes[train])) < 2:
            predicted["logreg"][test] = codes[train][0]
            continue
        model = _fit(x_labeled[train], codes[train], random_state)
        predicted["logreg"][test] = model.predict(x_labeled[test])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scores = {name: float(balanced_accuracy_score(codes, pred))
                  for name, pred in predicted.items()}
    return ("logreg" if scores["logreg"] > scores["knn"] else "knn"), scores
