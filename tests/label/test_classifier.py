"""Propagation by logistic regression, and the cross-validated k-NN / classifier choice."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_circles
from sklearn.metrics import balanced_accuracy_score

from napari_reddino.label.classifier import choose_method, cv_folds
from napari_reddino.label.propagate import propagate, propagate_features


def _labels(truth, per_class, seed=0):
    rng = np.random.default_rng(seed)
    classes = np.full(len(truth), None, dtype=object)
    for c in np.unique(truth):
        rows = rng.choice(np.flatnonzero(truth == c), per_class, replace=False)
        classes[rows] = truth[rows]
    return classes


def _score(result, truth, classes):
    rest = np.array([c is None for c in classes])
    return balanced_accuracy_score(truth[rest], result.classes[rest])


@pytest.fixture(scope="module")
def one_informative_axis():
    """Class = sign of axis 0; 30 axes of pure noise drown it for any distance-based vote."""
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, 3000)
    x = 3.0 * rng.standard_normal((3000, 31)).astype(np.float32)
    x[:, 0] = np.where(truth == 1, 1.0, -1.0) + 0.2 * rng.standard_normal(3000)
    return x, np.array(["a", "b"])[truth].astype(object)


def test_logreg_beats_knn_and_chance_when_one_axis_carries_the_class(one_informative_axis):
    x, truth = one_informative_axis
    classes = _labels(truth, 20)
    knn = _score(propagate(x, classes, method="knn"), truth, classes)
    logreg_result = propagate(x, classes, method="logreg")
    logreg = _score(logreg_result, truth, classes)
    assert logreg > 0.9 and logreg > knn + 0.15
    assert logreg_result.method == "logreg"
    manual = np.array([c is not None for c in classes])
    assert (logreg_result.confidence[manual] == 1).all()
    assert list(logreg_result.classes[manual]) == list(classes[manual])
    unlabeled = logreg_result.confidence[~manual]
    assert ((unlabeled >= 0.5) & (unlabeled <= 1)).all()
    auto = propagate(x, classes, method="auto")
    assert auto.method == "logreg" and auto.scores["logreg"] > auto.scores["knn"]


def test_auto_keeps_knn_where_no_line_separates_the_classes():
    x, truth = make_circles(2000, noise=0.03, factor=0.4, random_state=0)
    x = np.c_[x, np.ones(len(x))].astype(np.float32)  # offset: cosine separates the rings
    truth = np.array(["inner", "outer"])[truth].astype(object)
    classes = _labels(truth, 15)
    auto = propagate(x, classes, method="auto", k=5, center=False)  # centering drops the offset
    assert auto.method == "knn" and auto.scores["knn"] > auto.scores["logreg"]
    assert _score(auto, truth, classes) > 0.9


def test_choice_needs_two_labels_in_a_class_and_bad_method_is_refused():
    x = np.eye(3, dtype=np.float32)
    assert cv_folds(np.array([0, 1, 2])) is None
    assert choose_method(x, np.array([0, 1, 2])) == ("knn", {})
    with pytest.raises(ValueError, match="method"):
        propagate(x, np.array(["a", None, "b"], dtype=object), method="forest")


def test_propagate_features_in_morphology_space_needs_no_embedding():
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, 400)
    table = pd.DataFrame({
        "image": "s", "label": np.arange(400),
        "morph_area": np.where(truth == 1, 900.0, 400.0) + rng.normal(0, 40, 400),
        "morph_circularity": rng.uniform(0.8, 1.0, 400),
        "class": _labels(np.array(["small", "big"])[truth].astype(object), 5),
    })
    out = propagate_features(table, None, space="morphology", method="logreg")
    assert (out["class"].to_numpy() == np.array(["small", "big"])[truth]).mean() > 0.95
    with pytest.raises(ValueError, match="embedding_row"):
        propagate_features(table, None, space="embedding")
