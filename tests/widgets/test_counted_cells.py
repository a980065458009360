"""Counted cells in the docks (#24): a smear with border cells, a white cell, a platelet and a
drawn arrow, driven through the explorer and labeling docks as a user would."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.io import cell_table
from napari_reddino.label import files
from napari_reddino.label.classes import DEFAULT_CLASS_SET
from napari_reddino.label.journal import read_journal
from napari_reddino.plugin import layers
from napari_reddino.segment import counted
from napari_reddino.synthetic import smear as synthetic
from napari_reddino.widgets._counted import GREY
from napari_reddino.widgets.explorer import ExplorerWidget
from napari_reddino.widgets.labeling import LabelingWidget

ARROW = "arrow"


def _draw_arrow(image: np.ndarray, labels: np.ndarray, label: int) -> None:
    """A dark hand-drawn arrow (shaft + head) in the emptiest corner, as its own object."""
    h, w = labels.shape
    best = min(((y, x) for y in range(8, h - 60, 8) for x in range(8, w - 60, 8)),
               key=lambda p: np.count_nonzero(labels[p[0]:p[0] + 50, p[1]:p[1] + 50]))
    mask = np.zeros_like(labels, bool)
    y0, x0 = best
    for t in range(40):
        mask[y0 + 5 + t, x0 + 5 + t: x0 + 8 + t] = True  # shaft
    mask[y0 + 38:y0 + 46, x0 + 30:x0 + 46] = True  # head
    mask &= labels == 0
    labels[mask] = label
    image[mask] = (20, 20, 160)


def _smear_layers(viewer):
    """Image + Labels layer of a synthetic smear built through the plugin's layer contract."""
    smear = synthetic.synthetic_smear(shape=(320, 320), seed=2, name="smear_a")
    image, labels = smear.image.copy(), smear.labels.copy()
    arrow = int(labels.max()) + 1
    _draw_arrow(image, labels, arrow)
    table = cell_table.region_features(labels, image, image_name="smear_a", subject="s1")
    truth = smear.cells.set_index("label")["class"].astype(object).reindex(table["label"])
    truth = truth.fillna(ARROW).to_numpy()
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    table[nm.KIND] = np.select([truth == "wbc", truth == "platelet", truth == ARROW],
                               ["wbc", "platelet", "other"], "rbc")
    table[nm.TOUCHES_BORDER] = np.isin(table["label"], edge[edge > 0])
    rng = np.random.default_rng(0)
    codes = np.array([DEFAULT_CLASS_SET.index(c) if c in DEFAULT_CLASS_SET.names else 0
                      for c in truth])
    vectors = rng.normal(0, 0.25, size=(len(table), 16)).astype(np.float32)
    vectors[np.arange(len(table)), codes] += 4.0
    embeddings = cell_table.CellEmbeddings(vectors, np.full(len(table), "smear_a"),
                                           table["label"].to_numpy(), backbone="known",
                                           pooling="truth")
    data = [layers.image_layer_data(image, name="smear_a", image_name="smear_a", subject="s1"),
            layers.labels_layer_data(labels, table, embeddings, image_name="smear_a",
                                     image_layer="smear_a", subject="s1")]
    _image_layer, labels_layer = layers.add_layers(viewer, data)
    return labels_layer, pd.Series(truth, index=table["label"].to_numpy())


@pytest.fixture
def docks(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    layer, truth = _smear_layers(viewer)
    explorer, labeling = ExplorerWidget(viewer), LabelingWidget(viewer)
    qtbot.addWidget(explorer)
    qtbot.addWidget(labeling)
    return viewer, explorer, labeling, layer, truth


def _status_at(layer, label: int) -> str:
    """napari's status-bar text over one pixel of ``label``."""
    y, x = np.argwhere(np.asarray(layer.data) == label)[0]
    return layer.get_status((float(y), float(x)), world=True)["coordinates"]


def _propagate(labeling, wait_idle) -> None:
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)


def _review_all(labeling) -> set[int]:
    seen = set()
    for _ in range(len(labeling.layer_cells)):
        index = labeling.next_uncertain()
        if index is None or index in seen:
            break
        seen.add(index)
    return seen


def test_counted_cells_by_default_and_all_objects_on_switch(docks, wait_idle, tmp_path):
    _viewer, explorer, labeling, layer, truth = docks
    features = layer.features
    reasons = features.set_index("label")[nm.NOT_COUNTED_REASON]
    wbc, platelet = (int(truth.index[truth == kind][0]) for kind in ("wbc", "platelet"))
    arrow = int(truth.index[truth == ARROW][0])
    assert reasons[wbc] == "white cell" and reasons[platelet] == "platelet"
    assert reasons[arrow] == "debris or drawn mark"
    assert (reasons == counted.BORDER).sum() >= 3
    is_counted = features[nm.COUNTED].to_numpy(bool)
    n_counted, n_total = int(is_counted.sum()), len(features)
    assert 10 <= n_counted < n_total - 5

    # visible: the line in both docks, greyed objects, the reason on hover
    line = f"{n_counted} of {n_total} objects counted"
    assert labeling.counted.text() == line and explorer.counted.text() == line
    assert labeling.counted.checkbox.isChecked() and explorer.counted.checkbox.isChecked()
    for label in (wbc, platelet, arrow):
        np.testing.assert_allclose(layer.colormap.map(label)[:3], GREY[:3], atol=0.01)
    first_counted = int(features["label"][is_counted].iloc[0])
    assert not np.allclose(layer.colormap.map(first_counted)[:3], GREY[:3], atol=0.01)
    assert "not_counted_reason: white cell" in _status_at(layer, wbc)
    assert "not_counted_reason: debris or drawn mark" in _status_at(layer, arrow)

    # a label on an excluded object is kept
    table = labeling.layer_cells.table
    row_of = {int(lab): i for i, lab in enumerate(table["label"])}
    labeling.session.select([row_of[wbc]])
    labeling.classes.set_active("wbc")
    assert labeling.assign_selection()
    rows = np.flatnonzero(table[nm.COUNTED].to_numpy(bool))
    for name in ("discocyte", "elliptocyte" if "elliptocyte" in set(truth) else "target"):
        index = next(r for r in rows if truth.iloc[r] == name)
        labeling.session.select([index])
        labeling.classes.set_active(name)
        assert labeling.assign_selection()

    # counted cells only: propagation targets, review, counts, suggestions, the map
    _propagate(labeling, wait_idle)
    classes = layer.features.set_index("label")
    excluded = ~classes[nm.COUNTED].to_numpy(bool)
    assert classes.loc[wbc, nm.CLASS] == "wbc" and classes.loc[wbc, nm.CLASS_SOURCE] == "manual"
    others = excluded & (classes.index.to_numpy() != wbc)
    assert classes[nm.CLASS][others].isna().all()  # no guesses on objects that do not count
    assert classes[nm.CLASS][~excluded].notna().all()
    assert _review_all(labeling) <= set(rows.tolist())
    labeling.update_counts()
    counts = labeling.counts_panel.frame
    assert counts["count"].sum() == n_counted and "wbc" not in set(counts[nm.CLASS])
    assert line in labeling.counts_panel.summary.text()
    diff = labeling.differential_panel.full
    assert diff is not None and "wbc" not in set(diff[nm.CLASS])
    assert (diff.loc[diff["level"] == "smear", "counted"] == n_counted).all()
    labeling.suggest_panel.count.setValue(200)
    assert set(labeling.suggest_panel.suggest().tolist()) <= set(rows.tolist())
    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    assert np.array_equal(explorer.scatter.shown, ~excluded)

    # the switch (one for both docks) brings every object back
    explorer.counted.checkbox.setChecked(False)
    assert not labeling.counted.checkbox.isChecked() and not labeling.session.counted_only
    assert not np.allclose(layer.colormap.map(wbc)[:3], GREY[:3], atol=0.01)
    assert labeling.counts_panel.frame["count"].sum() == n_total
    _propagate(labeling, wait_idle)
    assert layer.features[nm.CLASS].notna().all()
    assert layer.features.set_index("label").loc[wbc, nm.CLASS] == "wbc"
    assert _review_all(labeling) - set(rows.tolist())
    assert set(labeling.suggest_panel.suggest().tolist()) - set(rows.tolist())
    assert explorer.scatter.shown.sum() == n_counted  # mapped before: run the projection again
    assert "run the projection again" in explorer.legend.text()
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    assert explorer.scatter.shown.all()

    # kept in the exports and the journal
    exported = files.read_labels(labeling.export_labels(tmp_path / "labels.csv"))
    assert exported.set_index("label").loc[wbc, nm.CLASS] == "wbc"
    journal = read_journal(labeling.autosaver.path)
    assert "wbc" in set(journal[nm.CLASS])
    explorer.counted.checkbox.setChecked(True)
    assert np.allclose(layer.colormap.map(wbc)[:3], GREY[:3], atol=0.01)


def test_excluding_by_hand_updates_what_counts(docks):
    _viewer, _explorer, labeling, layer, _truth = docks
    before = int(layer.features[nm.COUNTED].sum())
    labeling.update_counts()  # nothing labeled yet: empty tables, no error
    assert labeling.differential_panel.full is not None
    assert "no labeled red cell yet" in labeling.differential_panel.summary.text()
    label = int(layer.features["label"][layer.features[nm.COUNTED]].iloc[0])
    labeling.session.select(labeling.layer_cells.indices_for(layer, [label]))
    labeling.exclude_button.click()
    features = layer.features.set_index("label")
    assert features.loc[label, nm.NOT_COUNTED_REASON] == counted.EXCLUDED_BY_HAND
    assert int(layer.features[nm.COUNTED].sum()) == before - 1
    assert labeling.counted.text().startswith(f"{before - 1} of ")
    np.testing.assert_allclose(layer.colormap.map(label)[:3], GREY[:3], atol=0.01)
    assert f"{before - 1} of " in labeling.status.text()
    labeling.include_button.click()
    assert int(layer.features[nm.COUNTED].sum()) == before
    assert labeling.counted.text().startswith(f"{before} of ")
