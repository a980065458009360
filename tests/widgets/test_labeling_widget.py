"""The labeling dock driven as a user would, next to the explorer, on smears with truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_model.types import KeyBinding

from napari_reddino.label.journal import read_journal
from napari_reddino.widgets._linking import camera_of
from napari_reddino.widgets.explorer import ExplorerWidget
from napari_reddino.widgets.labeling import LabelingWidget

from ._cell_layers import add_smears


@pytest.fixture
def docks(make_napari_viewer, qtbot):
    """Explorer (PCA projection already shown) + labeling dock on two smears."""
    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    explorer = ExplorerWidget(viewer)
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(explorer)
    qtbot.addWidget(labeling)
    truth = np.concatenate(
        [t.reindex(layer.features["label"]).to_numpy() for _, layer, t in smears]
    )
    return viewer, explorer, labeling, smears, truth


def _classes_in_layers(smears) -> np.ndarray:
    return np.concatenate(
        [layer.features["class"].to_numpy(dtype=object) for _, layer, _ in smears]
    )


def _label_one_per_class(labeling, truth) -> np.ndarray:
    """Label the first cell of every truth class manually; returns their pooled indices."""
    firsts = np.array([np.flatnonzero(truth == c)[0] for c in np.unique(truth)])
    for index in firsts:
        labeling.session.select([index])
        labeling.classes.set_active(truth[index])
        assert labeling.assign_selection()
    return firsts


def _propagate(labeling, wait_idle) -> None:
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)


def test_clicking_a_cluster_labels_exactly_its_cells(docks, wait_idle):
    viewer, explorer, labeling, smears, truth = docks
    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    explorer.n_clusters.setValue(len(np.unique(truth)))
    explorer.cluster_runner.run_button.click()
    wait_idle(explorer.cluster_runner)
    clusters = explorer.layer_cells.table["cluster"].to_numpy()
    assert explorer.color_column.currentText() == "cluster"
    explorer.group_click.setChecked(True)
    explorer.scatter.select([0])  # what a click on point 0 does
    members = np.flatnonzero(clusters == clusters[0])
    np.testing.assert_array_equal(labeling.session.selection, members)
    # key "1" = first class: labels the selection with it
    first = labeling.classes.class_set.names[0]
    viewer.keymap[KeyBinding.from_str("1")](viewer)
    labeled = _classes_in_layers(smears)
    assert set(np.flatnonzero(labeled == first)) == set(members)
    assert pd.isna(labeled[np.setdiff1d(np.arange(len(truth)), members)]).all()


def test_propagation_fills_every_cell_from_one_label_per_class(docks, wait_idle):
    _, _, labeling, smears, truth = docks
    firsts = _label_one_per_class(labeling, truth)
    _propagate(labeling, wait_idle)
    table = pd.concat([layer.features for _, layer, _ in smears], ignore_index=True)
    assert table["class"].notna().all()
    sources = table["class_source"].to_numpy()
    assert set(np.flatnonzero(sources == "manual")) == set(firsts)
    assert (table["class"].to_numpy() == truth).mean() > 0.95
    assert table["confidence"].between(0, 1).all()


def test_centered_cosine_is_the_default_and_can_be_turned_off(docks, wait_idle):
    """The dock's votes are the core's, around the mean cell unless the user unticks it."""
    from napari_reddino.label.propagate import propagate

    _, _, labeling, _, truth = docks
    firsts = _label_one_per_class(labeling, truth)
    manual = np.full(len(truth), None, dtype=object)
    manual[firsts] = truth[firsts]
    assert labeling.center.isChecked()
    confidences = []
    for center in (True, False):
        labeling.center.setChecked(center)
        _propagate(labeling, wait_idle)
        expected = propagate(labeling.layer_cells.vectors, manual, k=labeling.k.value(),
                             center=center)
        table = labeling.layer_cells.table
        np.testing.assert_array_equal(table["class"].to_numpy(dtype=object), expected.classes)
        np.testing.assert_allclose(table["confidence"].to_numpy(), expected.confidence,
                                   atol=1e-6)
        confidences.append(expected.confidence)
    assert not np.allclose(*confidences)  # the setting matters on these cells


def test_review_queue_visits_the_least_confident_cell_first(docks, wait_idle):
    viewer, _, labeling, _, truth = docks
    _label_one_per_class(labeling, truth)
    labeling.k.setValue(3)
    _propagate(labeling, wait_idle)
    table = labeling.layer_cells.table
    propagated = table["class_source"].to_numpy() == "propagated"
    lowest = np.flatnonzero(propagated)[np.argmin(table["confidence"].to_numpy()[propagated])]
    index = labeling.next_uncertain()
    assert index == lowest
    np.testing.assert_array_equal(labeling.session.selection, [lowest])
    np.testing.assert_allclose(
        camera_of(viewer).center[-2:], table.loc[lowest, ["centroid_y", "centroid_x"]].astype(float)
    )
    # change its class: becomes manual and propagation runs again
    labeling.classes.set_active(truth[lowest])
    assert labeling.accept_review(labeling.classes.active_class)
    wait_idle(labeling.propagate_runner)
    assert labeling.layer_cells.table.loc[lowest, "class_source"] == "manual"
    assert labeling.layer_cells.table.loc[lowest, "class"] == truth[lowest]
    assert labeling.next_uncertain() != lowest


def test_undo_and_redo_a_label(docks):
    _, _, labeling, smears, _ = docks
    labeling.session.select([2, 3])
    labeling.classes.set_active("sickle")
    labeling.assign_selection()
    assert list(_classes_in_layers(smears)[[2, 3]]) == ["sickle", "sickle"]
    labeling.undo()
    assert pd.isna(_classes_in_layers(smears)[[2, 3]]).all()
    labeling.redo()
    assert list(_classes_in_layers(smears)[[2, 3]]) == ["sickle", "sickle"]


def test_export_then_import_round_trips(docks, wait_idle, tmp_path):
    _, _, labeling, _smears, truth = docks
    _label_one_per_class(labeling, truth)
    _propagate(labeling, wait_idle)
    before = labeling.layer_cells.public_table()[
        ["image", "label", "class", "class_source", "confidence"]
    ].copy()
    path = labeling.export_labels(tmp_path / "labels.csv")
    labeling.session.select(np.arange(len(truth)))
    labeling.assign_selection(None)  # wipe every label
    assert labeling.layer_cells.table["class"].isna().all()
    assert labeling.import_labels(path)
    after = labeling.layer_cells.public_table()[before.columns]
    pd.testing.assert_frame_equal(
        after.astype(object), before.astype(object), check_dtype=False, check_exact=False
    )


def test_import_of_labels_for_missing_cells_keeps_the_rest(docks, tmp_path):
    _, _, labeling, smears, _ = docks
    labeling.session.select([0, 1])
    labeling.classes.set_active("target")
    labeling.assign_selection()
    path = labeling.export_labels(tmp_path / "labels.csv")
    table = pd.read_csv(path)
    ghost = table.iloc[[0]].assign(label=9999, centroid_y=-500.0)  # on no cell at all
    pd.concat([table, ghost]).to_csv(path, index=False)
    labeling.undo()
    from napari.utils.notifications import notification_manager

    start = len(notification_manager.records)
    assert labeling.import_labels(path)
    messages = [str(n.message) for n in notification_manager.records[start:]]
    assert any("no longer exist" in m for m in messages)
    assert list(_classes_in_layers(smears)[[0, 1]]) == ["target", "target"]


def test_mismatching_import_changes_nothing(docks, tmp_path, error_messages):
    _, _, labeling, smears, _ = docks
    labeling.session.select([4])
    labeling.classes.set_active("echinocyte")
    labeling.assign_selection()
    bad = tmp_path / "other.csv"
    pd.DataFrame({"cell": [1, 2], "kind": ["a", "b"]}).to_csv(bad, index=False)
    assert not labeling.import_labels(bad)
    assert any("not a label table" in m for m in error_messages())
    labeled = _classes_in_layers(smears)
    assert labeled[4] == "echinocyte" and pd.isna(np.delete(labeled, 4)).all()


def test_deleting_a_class_in_use_is_refused(docks, error_messages):
    _, _, labeling, smears, _ = docks
    labeling.session.select([1])
    labeling.classes.set_active("dacrocyte")
    labeling.assign_selection()
    assert not labeling.classes.remove("dacrocyte")
    assert "dacrocyte" in labeling.classes.class_set
    assert any("cannot remove class 'dacrocyte'" in m for m in error_messages())
    assert _classes_in_layers(smears)[1] == "dacrocyte"
    assert labeling.classes.remove("platelet")  # unused: fine
    assert "platelet" not in labeling.classes.class_set


def test_rename_recodes_the_cells_and_saved_set_loads(docks, tmp_path):
    _, _, labeling, smears, _ = docks
    labeling.session.select([3])
    labeling.classes.set_active("target")
    labeling.assign_selection()
    assert labeling.classes.rename("target", "codocyte")
    assert _classes_in_layers(smears)[3] == "codocyte"
    path = labeling.classes.save(tmp_path / "classes.json")
    labeling.classes.set_class_set(labeling.classes.class_set.remove("sickle"))
    assert labeling.classes.load(path)
    assert "sickle" in labeling.classes.class_set and "codocyte" in labeling.classes.class_set


def test_autosave_restores_manual_labels_in_a_new_session(
    docks, make_napari_viewer, qtbot, tmp_path
):
    _, _, labeling, _, _ = docks
    path = tmp_path / "autosave.csv"
    assert labeling.set_autosave(path)
    labeling.session.select([0, 5])
    labeling.classes.set_active("sickle")
    labeling.assign_selection()
    saved = pd.read_csv(path)
    assert len(saved) == 2 and set(saved["class"]) == {"sickle"}

    viewer = make_napari_viewer()  # "after a crash": same smears, fresh viewer
    smears = add_smears(viewer)
    fresh = LabelingWidget(viewer)
    qtbot.addWidget(fresh)
    assert fresh.set_autosave(path)
    labeled = _classes_in_layers(smears)
    assert list(labeled[[0, 5]]) == ["sickle", "sickle"]
    assert pd.isna(np.delete(labeled, [0, 5])).all()


def test_manual_labels_are_autosaved_without_asking(docks, tmp_path, monkeypatch):
    """The first manual label starts a per-session autosave file in the user cache folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    _, _, labeling, smears, _ = docks
    assert labeling.autosaver is None
    labeling.session.select([3])
    labeling.classes.set_active("target")
    labeling.assign_selection()
    files = list((tmp_path / "cache" / "napari-reddino" / "autosave").glob("labels-*.csv"))
    assert len(files) == 1 and labeling.autosaver.path == files[0]
    saved = read_journal(files[0])  # an append-only journal: the last line per cell wins
    layer = smears[0][1]
    assert saved[["image", "label", "class"]].values.tolist() == [
        [layer.metadata["image"], int(layer.features["label"].iloc[3]), "target"]]
    labeling.undo()  # undo clears it in the journal too: it always mirrors the manual labels
    assert read_journal(files[0]).empty


def test_counts_and_class_color_view(docks, wait_idle):
    viewer, _, labeling, smears, truth = docks
    _label_one_per_class(labeling, truth)
    _propagate(labeling, wait_idle)
    counts = labeling.counts_panel.frame
    per_image = counts.groupby("image")["percent"].sum()
    np.testing.assert_allclose(per_image.to_numpy(), 100.0)
    image, layer = smears[0][1].metadata["image"], smears[0][1]
    expected = pd.Series(truth[: len(layer.features)]).value_counts()
    got = counts[counts["image"] == image].set_index("class")["count"]
    assert (got.reindex(expected.index).fillna(0) - expected).abs().sum() <= 2
    assert layer.contour == 0
    labeling.show_classes.setChecked(True)
    assert layer.contour >= 1  # outlines under the class colors
    overlay = viewer.layers[f"{layer.name} classes"]
    label = int(layer.features["label"].iloc[0])
    cls = layer.features["class"].iloc[0]
    color = labeling.classes.class_set.color_of(cls)
    got_color = overlay.colormap.color_dict[label]
    np.testing.assert_allclose(
        got_color[:3], [int(color[i : i + 2], 16) / 255 for i in (1, 3, 5)], atol=1e-3
    )
    labeling.show_classes.setChecked(False)
    assert layer.contour == 0 and not overlay.visible  # the user's own look is back
