"""The GUI cases of the bad-input battery (issue 16), one assertion each, under Xvfb."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_reddino.io.cell_table import CellEmbeddings
from napari_reddino.widgets._coloring import color_by
from napari_reddino.widgets.embedding import attach_embeddings
from napari_reddino.widgets.explorer import ExplorerWidget

from ._cell_layers import add_smears


def test_loading_embeddings_of_another_image_is_refused(make_napari_viewer):
    viewer = make_napari_viewer()
    _, layer, _ = add_smears(viewer, n_subjects=1)[0]
    features = layer.features.drop(columns=["embedding_row"], errors="ignore")
    layer.features = features
    other = CellEmbeddings(np.zeros((3, 4)), ["other.png"] * 3, [1, 2, 3], "fake", "cls_crop")
    with pytest.raises(ValueError, match=r"none of its \d+ cells is in them"):
        attach_embeddings(layer, other, layer.metadata["image"])


def test_cluster_ids_get_distinct_colors_not_a_ramp():
    rgba = color_by(pd.Series(np.arange(100, dtype=float), name="cluster")).rgba
    assert np.abs(np.diff(rgba[:, :3], axis=0)).sum(axis=1).min() > 0.1


@pytest.fixture
def explorer(make_napari_viewer, qtbot, wait_idle):
    viewer = make_napari_viewer()
    add_smears(viewer)
    widget = ExplorerWidget(viewer)
    qtbot.addWidget(widget)
    widget.method.setCurrentText("PCA")
    widget.project_runner.run_button.click()
    wait_idle(widget.project_runner)
    return widget


def test_a_lasso_closed_near_its_start_selects_instead_of_clicking(explorer):
    scatter = explorer.scatter
    scatter._mode = "lasso"
    width, height = scatter.canvas.size
    center = np.array([width / 2, height / 2])
    angles = np.linspace(0, 2 * np.pi * 0.995, 60)  # ends ~2 px from where it started
    path = center + 0.3 * min(width, height) * np.c_[np.cos(angles), np.sin(angles)]

    def event(pos):
        return SimpleNamespace(pos=pos, button=1, modifiers=(), is_dragging=True)

    scatter._on_press(event(path[0]))
    for pos in path[1:]:
        scatter._on_move(event(pos))
    scatter._on_release(event(path[-1]))
    assert len(explorer.session.selection) > 0


def test_segmenting_again_after_embedding_leaves_no_stale_explorer(explorer):
    from napari_reddino.io.cell_table import region_features
    from napari_reddino.plugin.session import SessionError

    layer = explorer.layer_cells.layers[0]
    fewer = np.where(layer.data <= 5, layer.data, 0)  # what a new segmentation left
    layer.metadata = {k: v for k, v in layer.metadata.items() if k != "reddino_embeddings"}
    layer.data = fewer
    layer.features = region_features(fewer, np.zeros((*fewer.shape, 3), np.uint8),
                                     image_name=layer.metadata["image"], subject="s")
    with pytest.raises(SessionError, match="no cells loaded"):  # not 'index 52 out of bounds'
        explorer.session.write_columns({"cluster": 1})


def test_the_labeling_tab_shows_its_ampersand(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QTabBar

    viewer = make_napari_viewer(show=True)
    viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")
    viewer.window.add_plugin_dock_widget("napari-reddino", "Label & propagate", tabify=True)
    qtbot.wait(50)
    tabs = [bar.tabText(i) for bar in viewer.window._qt_window.findChildren(QTabBar)
            for i in range(bar.count())]
    # Qt draws '&&' as '&', a lone '&' as an underline ("Label _propagate")
    assert any(text.startswith("Label && propagate") for text in tabs)


def test_number_keys_on_another_labels_layer_do_not_label_cells(make_napari_viewer, qtbot):
    from app_model.types import KeyBinding

    from napari_reddino.widgets.labeling import LabelingWidget

    viewer = make_napari_viewer()
    add_smears(viewer)
    explorer, labeling = ExplorerWidget(viewer), LabelingWidget(viewer)
    qtbot.addWidget(explorer)
    qtbot.addWidget(labeling)
    explorer.refresh()
    labeling.session.select([0, 1, 2])
    painted = viewer.add_labels(np.zeros((32, 32), np.int32), name="my annotations")
    viewer.layers.selection.active = painted  # the user paints their own layer, presses 1
    viewer.keymap[KeyBinding.from_str("1")](viewer)
    table = labeling.layer_cells.table
    assert "class" not in table or table["class"].isna().all()


@pytest.mark.parametrize("first", ["Cell explorer (UMAP)", "Label & propagate"])
def test_explorer_and_labeling_docks_both_fit_a_1280x1024_window(make_napari_viewer, qtbot,
                                                                  first):
    from qtpy.QtWidgets import QScrollArea

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 1024)
    add_smears(viewer)
    second = ({"Cell explorer (UMAP)", "Label & propagate"} - {first}).pop()
    docks = [viewer.window.add_plugin_dock_widget("napari-reddino", name)[0]
             for name in (first, second)]
    qtbot.wait(200)
    for dock in docks:
        scroll = dock.widget().findChild(QScrollArea)
        assert dock.height() >= 300  # not squeezed to its header
        assert scroll.widget().width() <= scroll.viewport().width()  # not clipped sideways


def test_the_segmentation_dock_segments_a_lazy_smear_tile_by_tile(make_napari_viewer,
                                                                     wait_idle):
    import dask.array as da

    from napari_reddino.segment.dispatch import segment
    from napari_reddino.synthetic.smear import synthetic_smear

    image = synthetic_smear(shape=(256, 256), seed=2).image
    viewer = make_napari_viewer()
    layer = viewer.add_image(da.from_array(image, chunks=(64, 64, 3)), name="lazy", rgb=True)
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    dock.image_combo.value = layer
    dock.runner.run_button.click()
    wait_idle(dock.runner)
    labels = viewer.layers["lazy labels"]
    assert len(labels.features) == len(segment(image).features) > 10
