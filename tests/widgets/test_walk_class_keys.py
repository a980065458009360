"""Walk-through of issue #27 items 6-7: number keys and hover say the class, not napari's tools."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt

from napari_reddino.widgets.labeling import LabelingWidget

from ._cell_layers import add_smears


def _dock(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    # opened as napari opens it: the dock gets napari's public-only proxy of the viewer
    _d, labeling = viewer.window.add_plugin_dock_widget("napari-reddino", "Label & propagate")
    assert isinstance(labeling, LabelingWidget)
    layer = smears[0][1]
    viewer.layers.selection.active = layer  # the smear's cells, as after a click on the layer
    return viewer, labeling, layer


def test_key_2_labels_spherocytes_and_the_status_bar_says_so(make_napari_viewer, qtbot):
    viewer, labeling, layer = _dock(make_napari_viewer, qtbot)
    assert labeling.classes.class_set.shortcuts["2"] == "spherocyte"
    assert "paint brush" not in viewer.help and "<2> spherocyte" in viewer.help
    labeling.session.select([0, 4])
    # a real key press on the canvas, as the user types it
    qtbot.keyClick(viewer.window._qt_viewer.canvas.native, Qt.Key.Key_2)
    assert layer.mode == "pan_zoom"  # napari's paint brush did not take the key
    assert list(layer.features["class"].iloc[[0, 4]]) == ["spherocyte", "spherocyte"]
    assert "spherocyte" in str(viewer.status) and "labeled 2" in str(viewer.status)
    assert "paint brush" not in viewer.help
    # napari rewrites its help when the mode changes: ours comes back with it
    layer.mode = "fill"
    assert "<2> spherocyte" in viewer.help and "paint brush" not in viewer.help
    # a layer that leaves the dock's cells gets napari's keys and help back
    labeling.keys.release()
    layer.mode = "pan_zoom"
    assert "paint brush" in viewer.help


def test_hover_status_on_a_labeled_cell_starts_with_its_class(make_napari_viewer, qtbot):
    _viewer, labeling, layer = _dock(make_napari_viewer, qtbot)
    labeling.session.select([3])
    labeling.classes.set_active("target")
    assert labeling.assign_selection()
    label = int(layer.features["label"].iloc[3])
    y, x = np.argwhere(layer.data == label)[0]
    status = layer.get_status((y, x), world=True)  # what napari's status bar shows on hover
    value = status["value"]
    assert value.startswith(f"{label}; ")
    first_property = value.split("; ", 1)[1]
    assert first_property.startswith("class: target"), value[:200]
    # the legend: the class list shows each class with its color and key
    item = labeling.classes.list.item(labeling.classes.class_set.index("target"))
    assert item.text().endswith("target") and not item.icon().isNull()
