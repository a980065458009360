"""The per-fold probes: k-NN from unit rows equals scikit-learn's, the probe runs on one thread."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier
from threadpoolctl import threadpool_info

from training.eval import probe
from training.eval.probe import evaluate_split, knn_predict, make_splits, unit_rows


def _cells(n=300, d=24, n_classes=5, n_sources=40, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.array([f"c{i}" for i in rng.integers(0, n_classes, n)])
    sources = np.array([f"s{i:02d}" for i in rng.integers(0, n_sources, n)])
    centers = {c: rng.normal(0, 1, d) for c in set(labels.tolist())}
    features = np.stack([centers[c] * 0.5 for c in labels]) + rng.normal(0, 1, (n, d))
    return features.astype(np.float32), labels, sources


@pytest.mark.parametrize("k", [1, 20, 500])
def test_knn_from_unit_rows_matches_scikit_learn(k):
    features, labels, sources = _cells()
    unit = unit_rows(features)
    for _, train, test in make_splits("loso", labels, sources)[:8]:
        expected = KNeighborsClassifier(n_neighbors=min(k, len(train)), metric="cosine",
                                        algorithm="brute").fit(features[train], labels[train])
        np.testing.assert_array_equal(knn_predict(unit, labels, train, test, k),
                                      expected.predict(features[test]))  # fmt: skip


def test_evaluate_split_equals_the_per_fold_scikit_learn_classifiers():
    features, labels, sources = _cells()
    unit = unit_rows(features)
    for _, train, test in make_splits("loso", labels, sources)[:5]:
        got = evaluate_split(features, labels, train, test, seed=0, unit=unit)
        for name in probe.CLASSIFIERS:
            model = probe.make_classifier(name, n_train=len(train), seed=0)
            model.fit(features[train], labels[train])
            expected = probe.score(labels[test], model.predict(features[test]))
            assert got[name] == pytest.approx(expected), name


def test_the_probe_fits_on_one_blas_thread(monkeypatch):
    seen = []
    make = probe.make_classifier

    def recording(name, **kw):
        model = make(name, **kw)
        fit = model.fit

        def fit_and_record(x, y):
            seen.extend(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
            return fit(x, y)

        model.fit = fit_and_record
        return model

    monkeypatch.setattr(probe, "make_classifier", recording)
    features, labels, sources = _cells()
    _, train, test = make_splits("loso", labels, sources)[0]
    evaluate_split(features, labels, train, test)
    assert seen and set(seen) == {1}
