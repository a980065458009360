"""#27 item 5, layers at scale: 20 smears open, each smear one row of the Smears dock whose box
shows or hides all its layers at once; overlays come only where asked for."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QPoint, Qt

from napari_reddino.plugin import layers as contract
from napari_reddino.plugin.session import LayerCells
from napari_reddino.widgets._linking import SelectionHighlighter

from ._cell_layers import add_smears

PLUGIN = "napari-reddino"
N_SMEARS = 20


@pytest.fixture
def twenty(make_napari_viewer, qtbot):
    """20 small embedded smears, cells of 3 of them selected (the explorer's rings), and the
    Smears dock."""
    viewer = make_napari_viewer(show=True)
    smears = add_smears(viewer, n_subjects=4, images_per_subject=5, shape=(160, 160))
    assert len(smears) == N_SMEARS
    cells = LayerCells.from_layers(viewer.layers)
    picked = [smears[i][1] for i in (0, 7, 19)]
    SelectionHighlighter(viewer).show(cells, np.concatenate([
        cells.indices_for(layer, layer.features["label"].to_numpy()[:2]) for layer in picked]))
    _, dock = viewer.window.add_plugin_dock_widget(PLUGIN, "Smears (show / hide)")
    qtbot.wait(50)  # the dock gathers many layer events into one update
    return viewer, smears, picked, dock


def _item(dock, smear: str):
    return next(dock.list.item(i) for i in range(dock.list.count())
                if dock.list.item(i).data(Qt.ItemDataRole.UserRole) == smear)


def _click_box(qtbot, dock, item) -> None:
    """Click the row's check box, where a user clicks it."""
    rect = dock.list.visualItemRect(item)
    qtbot.mouseClick(dock.list.viewport(), Qt.MouseButton.LeftButton,
                     pos=QPoint(rect.left() + rect.height() // 2, rect.center().y()))
    qtbot.wait(20)


def test_each_smear_is_one_row_with_only_its_own_layers(twenty):
    viewer, smears, picked, dock = twenty
    assert dock.list.count() == N_SMEARS  # the layer list holds 20 smears' layers
    for image, labels, _ in smears:
        group = dock.groups[image.name]
        rings = 1 if labels in picked else 0  # the selection's rings: only where cells are
        assert len(group) == 2 + rings  # image + cells (+ rings), no overlay made in advance
        assert image in group and labels in group
        assert all(layer.name.startswith(image.name) for layer in group)
    assert sum(len(g) for g in dock.groups.values()) == len(viewer.layers)

    image, labels, _ = smears[3]  # "Only the selected": one smear on screen, then all again
    dock.list.setCurrentItem(_item(dock, image.name))
    dock.only_button.click()
    assert {layer.name for layer in viewer.layers if layer.visible} == {image.name, labels.name}
    dock.show_all_button.click()
    assert all(layer.visible for layer in viewer.layers)


def test_one_click_hides_and_shows_all_the_layers_of_one_smear(twenty, qtbot):
    viewer, smears, _, dock = twenty
    image, labels, _ = smears[7]
    rgb, kwargs, _ = contract.overlay_rgb_data(  # the smear's PCA overlay, kept off
        np.zeros((7, 7, 3), np.float32), (14, 14), (6.5, 6.5), image_layer=image.name,
        visible=False)
    pca = viewer.add_image(rgb, **kwargs)
    qtbot.wait(50)
    group = dock.groups[image.name]
    assert len(group) == 4 and pca in group
    others = [layer for layer in viewer.layers if layer not in group]
    assert all(layer.visible for layer in others)

    _click_box(qtbot, dock, _item(dock, image.name))
    assert not any(layer.visible for layer in group)  # image, cells, rings, overlay
    assert all(layer.visible for layer in others)
    assert _item(dock, image.name).checkState() == Qt.CheckState.Unchecked

    _click_box(qtbot, dock, _item(dock, image.name))
    assert image.visible and labels.visible
    assert dock.groups[image.name][2:] and all(  # the rings follow their cells back
        layer.visible for layer in dock.groups[image.name] if layer is not pca)
    assert not pca.visible  # off before, off again
    assert _item(dock, image.name).checkState() == Qt.CheckState.Checked
