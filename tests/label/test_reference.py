"""The reference model on synthetic cell tables whose classes are known by construction."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.label.annotate import annotate_table, cluster_majority
from napari_reddino.label.boosted_trees import export_trees, tree_scores
from napari_reddino.label.calibration import expected_calibration_error, fit_temperature, softmax
from napari_reddino.label.reference import (
    LOW_PROBABILITY,
    OUT_OF_DISTRIBUTION,
    ReferenceModel,
    manual_classes,
)

COLUMNS = ("morph_area", "morph_circularity", "morph_mean_r", "morph_target_score")
#: class -> mean of each column: three well separated classes
CENTERS = {"normal": (100.0, 0.9, 200.0, 0.0), "spherocyte": (60.0, 0.97, 150.0, 0.0),
           "target": (110.0, 0.85, 190.0, 1.0)}
FAST = {"max_iter": 20, "max_leaf_nodes": 7, "n_folds": 3}


def synthetic_table(n_images: int = 6, per_class: int = 15, seed: int = 0) -> pd.DataFrame:
    """Cells of three classes in every smear, with a per-smear stain shift of mean_r."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_images):
        shift = rng.normal(0, 5)
        for name, center in CENTERS.items():
            for _ in range(per_class):
                values = np.asarray(center) * (1 + rng.normal(0, 0.04, len(center)))
                values[3] = center[3] + rng.normal(0, 0.1)
                values[2] += shift
                rows.append({nm.IMAGE: f"smear{i}.png", nm.KIND: "rbc",
                             nm.TOUCHES_BORDER: False, "truth": name,
                             **dict(zip(COLUMNS, values))})
    table = pd.DataFrame(rows)
    table[nm.LABEL] = table.groupby(nm.IMAGE).cumcount() + 1
    table[nm.AREA] = table["morph_area"]
    return table


@pytest.fixture(scope="module")
def table():
    return synthetic_table()


@pytest.fixture(scope="module")
def model(table):
    return ReferenceModel.fit(table, table["truth"].to_numpy(), **FAST)


def test_trees_as_arrays_score_as_scikit_learn():
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 4))
    x[::9, 1] = np.nan
    y = (x[:, 0] > 0).astype(int) + (x[:, 2] > 0.5)
    fitted = HistGradientBoostingClassifier(max_iter=15, early_stopping=False).fit(x, y)
    np.testing.assert_allclose(tree_scores(export_trees(fitted), x),
                               fitted.decision_function(x), atol=1e-9)
    binary = HistGradientBoostingClassifier(max_iter=5, early_stopping=False).fit(x, y > 0)
    scores = tree_scores(export_trees(binary), x)
    np.testing.assert_allclose(scores[:, 1] - scores[:, 0], binary.decision_function(x),
                               atol=1e-9)


def test_temperature_fixes_overconfidence():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 2000)
    logits = rng.normal(0, 1, (2000, 3))
    logits[np.arange(2000), codes] += 1.0
    sharp = 6 * logits  # the same ranking, far too sure
    t = fit_temperature(sharp, codes)
    assert t > 3
    assert expected_calibration_error(softmax(sharp, t), codes) < \
        expected_calibration_error(softmax(sharp), codes) / 2


def test_fit_predict_and_grouped_scores(model, table):
    prediction = model.predict(table)
    assert list(prediction.columns) == ["class", "probability", "assigned", "reason"]
    assigned = prediction["assigned"].to_numpy()
    assert assigned.mean() > 0.9
    assert (prediction["class"][assigned] == table["truth"][assigned]).mean() > 0.95
    scores = model.scores
    assert scores["accuracy"] > 0.9 and set(scores["per_class"]) == set(CENTERS)
    assert "whole smears held out" in scores["protocol"]
    assert 0 <= scores["ece"] <= 1 and model.temperature > 0


def test_far_cells_are_unassigned(model, table):
    far = table.iloc[:3].copy()
    far["morph_area"] = [1000.0, 5.0, 400.0]
    far["morph_target_score"] = [9.0, -9.0, 5.0]
    prediction = model.predict(far)
    assert not prediction["assigned"].any()
    assert set(prediction["reason"]) == {OUT_OF_DISTRIBUTION}


def test_low_probability_cells_are_unassigned(table):
    model = ReferenceModel.fit(table, table["truth"].to_numpy(), cross_validate=False, **FAST)
    model.threshold = 1.01  # nothing is that sure
    prediction = model.predict(table)
    assert not prediction["assigned"].any()
    assert set(prediction["reason"]) <= {LOW_PROBABILITY, OUT_OF_DISTRIBUTION}


def test_save_load_round_trip_is_bit_exact(model, table, tmp_path):
    folder = model.save(tmp_path / "mine")
    assert {p.name for p in folder.iterdir()} == {"model.json", "model.npz", "README.md"}
    np.load(folder / "model.npz", allow_pickle=False)  # no pickled object inside
    loaded = ReferenceModel.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(table), model.predict(table))
    np.testing.assert_array_equal(loaded.predict_proba(table), model.predict_proba(table))
    assert json.loads((folder / "model.json").read_text())["scores"]["accuracy"] > 0.9
    assert "spherocyte" in (folder / "README.md").read_text()


def test_load_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no reference model"):
        ReferenceModel.load(tmp_path / "nothing")


def test_update_with_manual_labels_changes_predictions(model):
    # a new smear whose target cells a user calls "codocyte" and whose normal cells look
    # like another lab's: the updated model follows the user
    user = synthetic_table(n_images=2, per_class=15, seed=5)
    user[nm.IMAGE] = "user_" + user[nm.IMAGE]
    classes = np.where(user["truth"] == "target", "codocyte", user["truth"]).astype(object)
    before = model.predict(user)
    assert "codocyte" not in set(before["class"])
    labeled = user.copy()
    labeled[nm.CLASS] = np.where(np.arange(len(user)) % 2 == 0, classes, None)
    labeled[nm.CLASS_SOURCE] = np.where(labeled[nm.CLASS].notna(), nm.MANUAL, None)
    updated = model.update(labeled)
    assert "codocyte" in updated.classes and updated.train_manual.sum() == labeled[
        nm.CLASS].notna().sum()
    after = updated.predict(user)
    odd = np.arange(len(user)) % 2 == 1  # cells the user did not label
    target = odd & (user["truth"] == "target").to_numpy()
    assert (after["class"][target] == "codocyte").mean() > 0.8
    assert len(model.train_codes) < len(updated.train_codes)  # the original is untouched


def test_manual_labels_never_overwritten(model, table):
    labeled = table.copy()
    labeled[nm.CLASS] = None
    labeled.loc[:4, nm.CLASS] = "my own class"
    labeled[nm.CLASS_SOURCE] = np.where(labeled[nm.CLASS].notna(), nm.MANUAL, None)
    labeled.loc[5, nm.CLASS], labeled.loc[5, nm.CLASS_SOURCE] = "target", nm.PROPAGATED
    labeled.loc[6, nm.TOUCHES_BORDER] = True
    out = annotate_table(labeled, model)
    assert (out.loc[:4, nm.CLASS] == "my own class").all()
    assert (out.loc[:4, nm.CLASS_SOURCE] == nm.MANUAL).all()
    assert out.loc[5, nm.CLASS_SOURCE] in (nm.PREDICTED, None)  # guesses are replaced
    assert out.loc[6, nm.CLASS] is None and pd.isna(out.loc[6, nm.CONFIDENCE])
    predicted = out[nm.CLASS_SOURCE] == nm.PREDICTED
    assert predicted.sum() > 0.9 * (len(out) - 7)
    assert (out.loc[predicted, nm.CLASS] == table.loc[predicted, "truth"]).mean() > 0.95
    assert list(manual_classes(out)[:5]) == ["my own class"] * 5


def test_cluster_votes(model, table):
    clusters = np.where(table["truth"] == "normal", 0, 1)
    majority = cluster_majority([0, 0, 0, 0, 1], ["a", "a", "b", None, None],
                                np.array([1, 1, 1, 0, 0], bool))
    assert list(majority) == ["a"] * 4 + [None]
    voted = annotate_table(table.assign(cluster=clusters), model, vote_clusters=True)
    classes = voted.loc[voted[nm.ASSIGNED], nm.CLASS]
    assert classes.groupby(clusters[voted[nm.ASSIGNED].to_numpy()]).nunique().max() == 1


def test_bundled_model_is_small_calibrated_and_pickle_free():
    from napari_reddino.label.reference import DEFAULT_REFERENCE, WEIGHTS

    folder = WEIGHTS / DEFAULT_REFERENCE
    if not (folder / "model.json").is_file():
        pytest.skip("bundled reference model not exported (benchmarks/reference_model.py)")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25 * 2 ** 20
    model = ReferenceModel.load(DEFAULT_REFERENCE)
    assert len(model.classes) == 12 and "uncategorised" not in model.classes
    assert model.scores["ece"] <= 0.05 and model.scores["macro_f1"] > 0.6
    assert "whole smears held out" in model.scores["protocol"]
    card = (folder / "README.md").read_text()
    assert "MIT" in card and "Caveats" in card
