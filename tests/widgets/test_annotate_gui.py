"""The labeling dock's "Reference model" panel on real smears (issue #26, items 2-4).

A user segments and embeds a real Chula smear with the docks, annotates it with the bundled
model, corrects five cells by hand, updates and saves the model, and a second viewer reads the
saved model on the other real smear: its classes are those of
``napari-reddino annotate RUN --model SAVED``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_model.types import KeyBinding

from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table
from napari_reddino.label.reference import DEFAULT_REFERENCE, MODEL_FILE, ReferenceModel
from napari_reddino.widgets import _annotate_panel

PLUGIN = "napari-reddino"
PER_CLASS = 30  # reference cells per class in the test's small model


def _small_reference(folder):
    """The bundled model's kind on a stratified sample of its cells with fewer trees: it refits
    and cross-validates in seconds on a loaded machine (the full model takes minutes)."""
    full = ReferenceModel.load(DEFAULT_REFERENCE)
    rng = np.random.default_rng(0)
    keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(full.train_codes == c))
                                   [:PER_CLASS] for c in range(len(full.classes))]))
    params = {**full.params, "max_iter": 8, "max_leaf_nodes": 7, "n_folds": 2}
    small = ReferenceModel._from_arrays(
        full.train_x[keep].astype(np.float64), [full.classes[c] for c in full.train_codes[keep]],
        full.train_groups[keep], full.train_manual[keep], full.classes, full.columns, params,
        "reference-small", full.floor)
    small.cross_validate()
    return small.save(folder)


def _segment_and_embed(viewer, wait_idle) -> None:
    """The smear of the viewer's one image layer, through the docks as a user runs them."""
    _, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment cells")
    segment.runner.run_button.click()
    wait_idle(segment.runner)
    _, embed = viewer.window.add_plugin_dock_widget(PLUGIN, "Embed smear (RedDino)")
    embed.set_backbone_source("reddino-tiny")
    embed.device.value, embed.pooling.value, embed.overlay.value = "cpu", "patch_mean", False
    embed.runner.run_button.click()
    wait_idle(embed.runner)


def _by_cell(table: pd.DataFrame, column: str) -> pd.Series:
    keys = pd.MultiIndex.from_arrays([table[nm.IMAGE].astype(str), table[nm.LABEL].astype(int)])
    return pd.Series(table[column].astype(object).to_numpy(), index=keys).sort_index()


def _pick_folder(monkeypatch, folder) -> None:
    monkeypatch.setattr(_annotate_panel.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: str(folder))


@pytest.mark.slow
def test_annotate_correct_update_save_and_reload_on_another_smear(
        make_napari_viewer, wait_idle, tmp_path, monkeypatch):
    small = _small_reference(tmp_path / "small")

    # viewer 1: the first real sample, segmented and embedded with the docks
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "real_smear")
    _segment_and_embed(viewer, wait_idle)
    _, labeling = viewer.window.add_plugin_dock_widget(PLUGIN, "Label & propagate")
    panel = labeling.annotate_panel
    assert panel.model_key() == DEFAULT_REFERENCE == "reference-rbc12"

    panel.annotate_runner.run_button.click()  # the bundled model
    wait_idle(panel.annotate_runner)
    table = labeling.layer_cells.public_table()
    counted = table[nm.COUNTED].astype(bool).to_numpy()
    source = table[nm.CLASS_SOURCE].astype(object).to_numpy()
    assert (source[counted] == nm.PREDICTED).sum() > 20
    assert pd.isna(source[~counted]).all()  # objects that are not counted get no class
    assert (table.loc[counted, nm.PREDICTED_CLASS].notna()).all()
    assert "cells predicted" in panel.info.text()
    assert "0 manual, " in labeling.differential_panel.summary.text()
    assert set(labeling.classes.class_set.names) == set(panel.models[DEFAULT_REFERENCE].classes)

    # five cells corrected the way a user does: select them (lasso / cluster), press a key
    target = labeling.classes.class_set.names[0]
    wrong = np.flatnonzero((source == nm.PREDICTED)
                           & (table[nm.CLASS].astype(str).to_numpy() != target))[:5]
    labeling.session.select(wrong)
    viewer.keymap[KeyBinding.from_str(labeling.classes.class_set.shortcut_of(target))](viewer)
    table = labeling.layer_cells.public_table()
    assert (table[nm.CLASS_SOURCE].to_numpy()[wrong] == nm.MANUAL).all()
    assert (table[nm.CLASS].to_numpy()[wrong] == target).all()
    labeling.update_counts()
    assert "5 manual, " in labeling.differential_panel.summary.text()

    # update a model (a small one, browsed to) on these labels; its score shows before saving
    _pick_folder(monkeypatch, small)
    panel.browse_button.click()
    assert panel.model_key() == str(small)
    panel.update_runner.run_button.click()
    wait_idle(panel.update_runner)
    updated = panel.models[panel.unsaved]
    assert int(updated.train_manual.sum()) == 5 and updated.scores
    assert f"accuracy {updated.scores['accuracy']:.3f}" in panel.info.text()
    assert "(not saved)" in panel.model_line.currentText()
    saved = tmp_path / "my-model"
    assert not saved.exists()
    _pick_folder(monkeypatch, saved)
    panel.save_button.click()
    assert (saved / MODEL_FILE).is_file() and panel.model_key() == str(saved)
    assert "(not saved)" not in [panel.model_line.itemText(i)
                                 for i in range(panel.model_line.count())]
    panel.annotate_runner.run_button.click()  # the saved model; manual labels stay manual
    wait_idle(panel.annotate_runner)
    table = labeling.layer_cells.public_table()
    assert (table[nm.CLASS_SOURCE].to_numpy()[wrong] == nm.MANUAL).all()
    assert (table[nm.CLASS].to_numpy()[wrong] == target).all()

    # viewer 2: the second real sample; the saved model gives the classes the CLI gives
    other = make_napari_viewer()
    other.open_sample(PLUGIN, "real_smears")
    other.layers.remove("chula_elliptocytosis")
    _segment_and_embed(other, wait_idle)
    run = tmp_path / "thalassemia-run"
    other.layers.save(str(run), plugin=PLUGIN)  # a run folder, as File > Save Layers does
    assert main(["-q", "annotate", str(run), "--model", str(saved)]) == 0
    by_cli = load_table(run / nm.CELLS_TABLE_FILE)
    _, labeling2 = other.window.add_plugin_dock_widget(PLUGIN, "Label & propagate")
    panel2 = labeling2.annotate_panel
    _pick_folder(monkeypatch, saved)
    panel2.browse_button.click()
    panel2.annotate_runner.run_button.click()
    wait_idle(panel2.annotate_runner)
    by_dock = labeling2.layer_cells.public_table()
    assert set(by_dock[nm.IMAGE]) == {"chula_thalassemia.jpg"}
    assert len(by_dock) == len(by_cli)
    assert (by_dock[nm.CLASS_SOURCE].astype(str) == nm.PREDICTED).sum() > 20
    for column in (nm.CLASS, nm.CLASS_SOURCE, nm.PREDICTED_CLASS):
        pd.testing.assert_series_equal(_by_cell(by_dock, column), _by_cell(by_cli, column),
                                       check_names=False)
