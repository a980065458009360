"""Walk-through of issue #27 item 1: labels of an earlier session come back after a restart,
offered by the dock, or through an Open dialog (never a Save dialog asking "replace it?")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from qtpy.QtWidgets import QFileDialog

from napari_reddino.label.classes import CHULA_CLASS_SET
from napari_reddino.label.journal import read_journal
from napari_reddino.widgets.labeling import LabelingWidget

from ._cell_layers import add_smears


def _classes(smears) -> np.ndarray:
    return np.concatenate([
        layer.features["class"].to_numpy(dtype=object) if "class" in layer.features
        else np.full(len(layer.features), None, dtype=object) for _, layer, _ in smears])


def _first_session(make_napari_viewer, qtbot, class_set=None, names=("sickle", "target")):
    """Label three cells by hand; the dock autosaves them without asking, then napari quits."""
    viewer = make_napari_viewer()
    add_smears(viewer)
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(labeling)
    assert labeling.restore_bar.isHidden()  # nothing earlier to offer
    if class_set is not None:
        labeling.classes.set_class_set(class_set)
    for indices, name in zip(([0, 5], [7]), names):
        labeling.session.select(indices)
        labeling.classes.set_active(name)
        assert labeling.assign_selection()
    journal = labeling.autosaver.path
    assert len(read_journal(journal)) == 3
    labeling.close()
    viewer.close()
    return journal


def _restart(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()  # the same smears, a fresh napari
    smears = add_smears(viewer)
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(labeling)
    return labeling, smears


def _no_save_dialog(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("restoring must not open a Save dialog")

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(refuse))


def test_the_dock_offers_the_labels_of_the_session_before_a_restart(
    make_napari_viewer, qtbot, monkeypatch
):
    journal = _first_session(make_napari_viewer, qtbot)
    labeling, smears = _restart(make_napari_viewer, qtbot)
    _no_save_dialog(monkeypatch)
    assert pd.isna(_classes(smears)).all()  # starts from zero...
    assert not labeling.restore_bar.isHidden()  # ...unless the user takes the offer
    button = labeling.restore_bar.restore_button
    assert button.text() == f"Restore 3 labels from {journal.name}"
    button.click()
    labeled = _classes(smears)
    assert list(labeled[[0, 5, 7]]) == ["sickle", "sickle", "target"]
    assert pd.isna(np.delete(labeled, [0, 5, 7])).all()
    assert labeling.restore_bar.isHidden()
    # the session goes on in the same journal: the next label lands there too
    assert labeling.autosaver.path == journal
    labeling.session.select([9])
    labeling.classes.set_active("wbc")
    labeling.assign_selection()
    assert len(read_journal(journal)) == 4
    labeling.undo()  # undo of the restore itself is one step too
    labeling.undo()
    assert pd.isna(_classes(smears)).all()


def test_not_now_hides_the_offer(make_napari_viewer, qtbot):
    _first_session(make_napari_viewer, qtbot)
    labeling, smears = _restart(make_napari_viewer, qtbot)
    labeling.restore_bar.dismiss_button.click()
    assert labeling.restore_bar.isHidden() and pd.isna(_classes(smears)).all()
    labeling.offer_restore()  # the same file is not offered again in this session
    assert labeling.restore_bar.isHidden()


@pytest.mark.parametrize("answer", ["file", "cancel"])
def test_restore_labels_button_opens_the_file_it_reads(
    make_napari_viewer, qtbot, monkeypatch, answer
):
    journal = _first_session(make_napari_viewer, qtbot)
    labeling, smears = _restart(make_napari_viewer, qtbot)
    _no_save_dialog(monkeypatch)
    asked = []

    def open_dialog(*args, **kwargs):
        asked.append(args)
        return (str(journal) if answer == "file" else "", "")

    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(open_dialog))
    labeling.restore_button.click()
    assert len(asked) == 1 and "Restore" in asked[0][1]
    labeled = _classes(smears)
    if answer == "cancel":
        assert pd.isna(labeled).all() and labeling.autosaver is None
        return
    assert list(labeled[[0, 5, 7]]) == ["sickle", "sickle", "target"]
    assert (pd.read_csv(journal)["class"].dropna() != "").sum() == 3  # read, never replaced
    assert labeling.restore_bar.isHidden()


def test_a_label_file_beside_the_smears_photo_is_offered(
    make_napari_viewer, qtbot, tmp_path
):
    """Labels exported next to the photos (a colleague's, another machine's) are offered when
    those photos are opened, with no autosave of this machine involved."""
    from skimage.io import imsave

    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(labeling)
    labeling.session.select([1, 2])
    labeling.classes.set_active("elliptocyte")
    labeling.assign_selection()
    folder = tmp_path / "photos"
    folder.mkdir()
    for image, _labels, _truth in smears:
        imsave(folder / f"{image.name}.png", image.data, check_contrast=False)
    exported = labeling.export_labels(folder / "ward3_labels.csv")
    labeling.autosaver.path.unlink()  # not this machine's autosave: the file beside the photos
    labeling.close()

    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    for image, _labels, _truth in smears:  # the photos opened from their files
        name = image.name
        viewer.layers.remove(image)
        [opened] = viewer.open(folder / f"{name}.png", plugin="napari")
        assert opened.name == name and opened.source.path
    fresh = LabelingWidget(viewer)
    qtbot.addWidget(fresh)
    assert fresh.restore_bar.restore_button.text() == "Restore 2 labels from ward3_labels.csv"
    fresh.restore_bar.restore_button.click()
    assert list(_classes(smears)[[1, 2]]) == ["elliptocyte", "elliptocyte"]
    assert exported.is_file()


def test_labels_of_another_class_set_come_back_with_their_classes(make_napari_viewer, qtbot):
    """A Chula session restored into a dock that starts with the synthetic classes: the offer
    still shows, and the restore brings the Chula class set with the labels."""
    _first_session(make_napari_viewer, qtbot, CHULA_CLASS_SET, ("burr cell", "target cell"))
    labeling, smears = _restart(make_napari_viewer, qtbot)
    assert "burr cell" not in labeling.classes.class_set
    assert labeling.restore_bar.restore_button.text().startswith("Restore 3 labels from ")
    labeling.restore_bar.restore_button.click()
    assert labeling.classes.class_set == CHULA_CLASS_SET
    assert list(_classes(smears)[[0, 5, 7]]) == ["burr cell", "burr cell", "target cell"]
