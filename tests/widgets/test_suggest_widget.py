"""The labeling dock's "Suggest cells to label" and feature-space choice, driven in a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.morphology.features import COLUMN_PREFIX, merge_morphology, morphology_features
from napari_reddino.widgets.labeling import LabelingWidget

from ._cell_layers import add_smears


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    """Two smears with known-structure embeddings and measured morphology columns."""
    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    for image_layer, labels_layer, _truth in smears:
        measured = morphology_features(labels_layer.data, image_layer.data, prefix=COLUMN_PREFIX)
        labels_layer.features = merge_morphology(labels_layer.features, measured)
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(labeling)
    truth = np.concatenate([t.reindex(layer.features["label"]).to_numpy()
                            for _, layer, t in smears])
    return viewer, labeling, truth


def test_suggestions_cover_every_class_and_step_through_cells(dock):
    _viewer, labeling, truth = dock
    panel = labeling.suggest_panel
    assert panel.space_name() == "morphology"  # the default where the cells have morphology
    assert [panel.space.itemText(i) for i in range(panel.space.count())] == [
        "embedding", "morphology", "both"]
    panel.space.setCurrentText("embedding")  # known structure: one blob per class
    n_classes = len(np.unique(truth))
    panel.count.setValue(n_classes)
    panel.suggest_button.click()
    picks = panel.picks
    assert len(picks) == n_classes and set(truth[picks]) == set(np.unique(truth))
    assert list(labeling.session.selection) == [picks[0]]
    assert "suggestion 1/" in panel.info.text() and "equivalent diameter" in panel.info.text()
    panel.next_button.click()
    assert list(labeling.session.selection) == [picks[1]]
    # label every suggestion with its true class, then suggestions skip labeled cells
    for index in picks:
        labeling.session.select([index])
        labeling.classes.set_active(truth[index])
        assert labeling.assign_selection()
    again = panel.suggest()
    assert not set(again) & set(picks)


def test_propagation_uses_the_chosen_space_and_classifier(dock, wait_idle):
    _viewer, labeling, truth = dock
    rng = np.random.default_rng(0)
    for name in np.unique(truth):
        members = np.flatnonzero(truth == name)
        for index in rng.choice(members, min(3, len(members)), replace=False):
            labeling.session.select([index])
            labeling.classes.set_active(name)
            assert labeling.assign_selection()
    panel = labeling.suggest_panel
    panel.space.setCurrentText("embedding")
    panel.method.setCurrentIndex(panel.method.findData("logreg"))
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)
    assert "embedding space, logreg" in labeling.status.text()
    embedding_acc = (labeling.layer_cells.table["class"].to_numpy() == truth).mean()
    assert embedding_acc > 0.9  # one blob per class
    panel.space.setCurrentText("morphology")
    panel.method.setCurrentIndex(panel.method.findData("knn"))
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)
    assert "morphology space, knn" in labeling.status.text()
    x = panel.matrix()
    columns = labeling.layer_cells.table.columns
    assert x.shape[1] == sum(c.startswith(COLUMN_PREFIX) for c in columns)
