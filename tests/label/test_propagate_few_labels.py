"""Propagating from one labeled cell or one class (#23 B7): every cell got that class at
confidence 1.00; now it warns, says what to do and leaves the confidence empty."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.label.propagate import propagate, propagate_features

ADVICE = "label at least two classes"


@pytest.fixture
def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)


@pytest.mark.parametrize("labeled", [[3], [3, 9, 20]])
@pytest.mark.parametrize("method", ["knn", "logreg", "auto"])
def test_one_class_warns_and_claims_no_confidence(vectors, labeled, method):
    classes = np.full(len(vectors), None, dtype=object)
    classes[labeled] = "normal"
    with pytest.warns(UserWarning, match=ADVICE):
        result = propagate(vectors, classes, method=method, k=3)
    others = np.setdiff1d(np.arange(len(vectors)), labeled)
    assert (result.classes == "normal").all()
    assert np.isnan(result.confidence[others]).all()  # not 1.00
    assert (result.confidence[labeled] == 1.0).all()
    assert ADVICE in result.warning and "'normal'" in result.warning


def test_two_classes_do_not_warn(vectors, recwarn):
    classes = np.full(len(vectors), None, dtype=object)
    classes[[1, 2]], classes[[5, 6]] = "a", "b"
    result = propagate(vectors, classes, k=3, method="knn")
    assert not [w for w in recwarn if ADVICE in str(w.message)]
    assert result.warning == "" and np.isfinite(result.confidence).all()


def test_table_glue_passes_the_warning_on(vectors):
    table = pd.DataFrame({"image": "a.png", "label": np.arange(1, 41), "embedding_row":
                          np.arange(40), "class": [None] * 40})
    table.loc[0, "class"] = "target"
    with pytest.warns(UserWarning, match=ADVICE):
        out = propagate_features(table, vectors, space="embedding", method="knn")
    assert out["confidence"].iloc[1:].isna().all()
