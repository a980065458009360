"""The explorer dock driven as a user would, on synthetic smears with known truth."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from napari.utils._proxies import ReadOnlyWrapper
from napari.utils.interactions import mouse_press_callbacks, mouse_release_callbacks

from napari_reddino.widgets import _linking
from napari_reddino.widgets._linking import camera_of
from napari_reddino.widgets.explorer import ExplorerWidget

from ._cell_layers import add_smears


@pytest.fixture
def explorer(make_napari_viewer, qtbot, wait_idle):
    """Two smears of two subjects, PCA already run through the dock's own button."""
    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    widget = ExplorerWidget(viewer)
    qtbot.addWidget(widget)
    widget.method.setCurrentText("PCA")
    widget.project_runner.run_button.click()
    wait_idle(widget.project_runner)
    return viewer, widget, smears


def _truth_table(widget):
    table = widget.layer_cells.table
    return table["image"].to_numpy(), table["label"].to_numpy()


def test_projection_writes_coordinates_into_every_layer(explorer):
    _viewer, widget, smears = explorer
    total = sum(len(layer.features) for _, layer, _ in smears)
    assert widget.cells_label.text().startswith(f"{total} cells in 2 smear(s)")
    for _, layer, _ in smears:
        coords = layer.features[["umap_0", "umap_1"]].to_numpy()
        assert np.isfinite(coords).all()
    assert len(widget.scatter.points) == total
    # the plot shows exactly the coordinates written back to the layers
    pooled = np.concatenate([layer.features[["umap_0", "umap_1"]] for _, layer, _ in smears])
    np.testing.assert_allclose(
        np.sort(widget.scatter.points, axis=0), np.sort(pooled.astype(np.float32), axis=0)
    )


def test_rectangle_selection_highlights_exactly_those_cells(explorer):
    _viewer, widget, smears = explorer
    points = widget.scatter.points
    low, high = np.percentile(points, 20, axis=0), np.percentile(points, 70, axis=0)
    widget.scatter.select_rectangle(low, high)
    inside = np.flatnonzero(np.all((points >= low) & (points <= high), axis=1))
    assert 0 < inside.size < len(points)
    images, labels = _truth_table(widget)
    for _, layer, _ in smears:
        expected = np.sort(labels[inside][images[inside] == layer.metadata["image"]])
        np.testing.assert_array_equal(widget.highlighter.highlighted(layer), expected)
    assert widget.selection_label.text() == f"Selected: {inside.size}"


def test_lasso_selects_points_inside_polygon(explorer):
    _viewer, widget, _ = explorer
    points = widget.scatter.points.astype(np.float64)
    center = np.median(points, axis=0)
    radius = np.abs(points - center).sum(axis=1).max() * 0.5
    diamond = center + radius * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    widget.scatter.select_polygon(diamond)
    expected = np.flatnonzero(np.abs(points - center).sum(axis=1) < radius)
    np.testing.assert_array_equal(widget.session.selection, expected)


def test_picking_a_label_selects_exactly_its_point(explorer):
    _viewer, widget, smears = explorer
    _, layer, _ = smears[1]
    label = int(layer.features["label"].iloc[3])
    layer.selected_label = label
    images, labels = _truth_table(widget)
    (index,) = widget.scatter.selection
    assert (images[index], labels[index]) == (layer.metadata["image"], label)


def test_clicking_a_cell_in_the_image_selects_its_point(explorer, MouseEvent):
    viewer, widget, smears = explorer
    _, layer, _ = smears[0]
    smears[1][1].visible = False  # the smears lie on top of each other: show the first one
    label = int(layer.features["label"].iloc[5])
    # a pixel that belongs to the cell, in world coordinates
    y, x = np.argwhere(np.asarray(layer.data) == label)[0]

    @dataclass
    class Click(MouseEvent):
        modifiers: tuple = ()

    for kind in ("mouse_press", "mouse_release"):
        event = ReadOnlyWrapper(Click(type=kind, position=(float(y), float(x)), button=1))
        (mouse_press_callbacks if kind == "mouse_press" else mouse_release_callbacks)(viewer, event)
    images, labels = _truth_table(widget)
    (index,) = widget.session.selection
    assert (images[index], labels[index]) == (layer.metadata["image"], label)
    np.testing.assert_array_equal(widget.highlighter.highlighted(layer), [label])


def test_color_by_subject_uses_the_subject_column(explorer):
    _viewer, widget, _ = explorer
    widget.color_column.setCurrentText("subject")
    subjects = widget.layer_cells.table["subject"].to_numpy()
    colors = widget.scatter.colors
    per_subject = {s: np.unique(colors[subjects == s], axis=0) for s in np.unique(subjects)}
    assert all(len(c) == 1 for c in per_subject.values())
    first, second = per_subject.values()
    assert not np.allclose(first, second)
    for subject in per_subject:
        assert subject in widget.legend.text()


def test_numeric_column_uses_a_colormap(explorer):
    _viewer, widget, _ = explorer
    widget.color_column.setCurrentText("area")
    area = widget.layer_cells.table["area"].to_numpy()
    colors = widget.scatter.colors
    # viridis: the biggest cell is brighter (yellow) than the smallest (purple)
    assert colors[area.argmax()][:3].sum() > colors[area.argmin()][:3].sum()
    assert "viridis" in widget.legend.text()


def test_go_to_cell_centers_the_camera(explorer):
    viewer, widget, smears = explorer
    _, layer, _ = smears[1]
    row = layer.features.iloc[2]
    layer.selected_label = int(row["label"])
    widget.go_to_selected()
    np.testing.assert_allclose(camera_of(viewer).center[-2:],
                               (row["centroid_y"], row["centroid_x"]))
    assert camera_of(viewer).zoom > 1


def test_selection_becomes_a_labels_layer(explorer):
    _viewer, widget, smears = explorer
    _, layer, _ = smears[0]
    chosen = layer.features["label"].to_numpy()[[0, 4, 7]]
    widget.session.select(widget.layer_cells.indices_for(layer, chosen))
    (made,) = widget.selection_to_layer()
    np.testing.assert_array_equal(np.unique(made.data)[1:], np.sort(chosen))
    assert sorted(made.features["label"]) == sorted(chosen)


def test_hover_shows_the_cell_thumbnail_and_features(explorer):
    _viewer, widget, _smears = explorer
    widget.scatter.set_hovered(7)
    row = widget.layer_cells.table.iloc[7]
    assert f"<b>label</b>: {row['label']}" in widget.hover_panel.details.text()
    assert not widget.hover_panel.thumbnail.pixmap().isNull()


def test_refresh_without_embedded_layers_warns_clearly(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((8, 8), dtype=np.int32), name="plain")
    widget = ExplorerWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.refresh() is None
    assert "no Labels layer with cell features and embeddings" in widget.cells_label.text()
    widget.project_runner.run_button.click()  # must not raise
    assert widget.layer_cells is None


def test_batch_metrics_table_and_csv(explorer, wait_idle, tmp_path):
    _viewer, widget, _smears = explorer
    widget.batch_runner.run_button.click()
    wait_idle(widget.batch_runner)
    frame = widget.batch_panel.frame
    assert frame is not None and widget.batch_panel.table.rowCount() == 2
    path = widget.batch_panel.export_csv(tmp_path / "batch.csv")
    written = pd.read_csv(path)
    assert len(written) == 2 and list(written.columns) == list(frame.columns)


@pytest.mark.slow
def test_umap_of_real_backbone_embeddings(make_napari_viewer, qtbot, wait_idle, tiny_backbone):
    """The whole path with a real (tiny) ViT: embed cells, UMAP in the dock, link back."""
    from napari_reddino.embed.grid import iter_cell_embeddings
    from napari_reddino.explore.projection import trustworthiness
    from napari_reddino.progress import run_to_completion

    def embed_fn(image, labels, name):
        return run_to_completion(
            iter_cell_embeddings(
                image, labels, tiny_backbone, pooling="patch_mean", image_name=name
            )
        )

    viewer = make_napari_viewer()
    smears = add_smears(viewer, shape=(224, 224), embed_fn=embed_fn)
    widget = ExplorerWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.method.currentText() == "UMAP"
    widget.project_runner.run_button.click()
    wait_idle(widget.project_runner)
    coords = widget.layer_cells.table[["umap_0", "umap_1"]].to_numpy()
    assert np.isfinite(coords).all()
    assert trustworthiness(widget.layer_cells.vectors, coords, n_neighbors=5) > 0.7
    _, layer, _ = smears[0]
    label = int(layer.features["label"].iloc[1])
    layer.selected_label = label
    (index,) = widget.scatter.selection
    np.testing.assert_allclose(
        widget.scatter.points[index],
        layer.features.set_index("label")
        .loc[label, ["umap_0", "umap_1"]]
        .to_numpy(dtype=np.float32),
    )


def test_mouse_drag_rectangle_and_hover_on_the_scatter_canvas(explorer):
    """Real vispy mouse events: drag a box in rectangle mode, then hover one point."""
    _, widget, _ = explorer
    scatter = widget.scatter
    to_canvas = scatter.canvas.scene.node_transform(scatter.view.scene).imap
    points = scatter.points
    low, high = np.percentile(points, 30, axis=0), np.percentile(points, 80, axis=0)
    a, b = to_canvas(low)[:2], to_canvas(high)[:2]
    scatter.mode = "rectangle"
    press = scatter.canvas.events.mouse_press(pos=a, button=1, modifiers=())
    scatter.canvas.events.mouse_move(pos=(a + b) / 2, button=1, press_event=press, modifiers=())
    scatter.canvas.events.mouse_release(pos=b, button=1, modifiers=())
    corner_low, corner_high = scatter.to_data(a), scatter.to_data(b)
    box_low, box_high = np.minimum(corner_low, corner_high), np.maximum(corner_low, corner_high)
    expected = np.flatnonzero(np.all((points >= box_low) & (points <= box_high), axis=1))
    assert expected.size > 0
    np.testing.assert_array_equal(widget.session.selection, expected)

    scatter.mode = "pan"
    target = 5
    scatter.canvas.events.mouse_move(pos=to_canvas(points[target])[:2], modifiers=())
    assert scatter.hovered_index == target
    assert f"<b>label</b>: {widget.layer_cells.table['label'].iloc[target]}" in (
        widget.hover_panel.details.text()
    )


def test_docks_opened_from_the_plugins_menu_share_one_session(make_napari_viewer, wait_idle):
    """napari hands plugin docks a proxy of the viewer (a new one per dock, a new proxy per
    attribute access): the explorer and labeling docks must still share selection and cells,
    through napari's public API only (a private access through the proxy warns)."""
    viewer = make_napari_viewer()
    smears = add_smears(viewer)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        add = viewer.window.add_plugin_dock_widget
        _d, explorer = add("napari-reddino", "Cell explorer (UMAP)")
        _d, labeling = add("napari-reddino", "Label & propagate")
        assert type(explorer.viewer) is not type(viewer)  # napari's proxy, not the viewer
        assert explorer.session is labeling.session
        assert explorer.layer_cells is not None and len(explorer.layer_cells) > 0
        explorer.method.setCurrentText("PCA")
        explorer.project_runner.run_button.click()
        wait_idle(explorer.project_runner)
        labeling.session.select([2, 5])  # e.g. the review queue or a click in the labeling dock
        np.testing.assert_array_equal(explorer.scatter.selection, [2, 5])
        rings = [layer for layer in viewer.layers if layer.name.endswith("labels selection")]
        assert sum(len(layer.data) for layer in rings) == 2
        # the labeling dock labels the explorer's selection in the layers' own features
        name = labeling.classes.active_class
        assert labeling.assign_selection(name)
        table = explorer.layer_cells.table
        for index in (2, 5):
            layer = smears[int(table["_layer"].iloc[index])][1]
            row = layer.features.loc[layer.features["label"] == table["label"].iloc[index]]
            assert row["class"].tolist() == [name]
        # a click on a cell in the canvas selects it in both docks
        explorer.go_to_selected()
        index = int(explorer.session.selection[0])
        layer_cells = explorer.layer_cells
        layer = layer_cells.layers[int(layer_cells.table["_layer"].iloc[index])]
        center = layer_cells.table[["centroid_y", "centroid_x"]].to_numpy()[index]
        world = layer.data_to_world(center)
        assert _linking.cell_at(viewer, layer_cells, world) == index
    private = [str(w.message) for w in caught if "Private attribute" in str(w.message)]
    assert not private, private


def test_the_projection_status_ends_done_even_when_the_map_is_cached(make_napari_viewer,
                                                                      wait_idle):
    """#27 item 4: napari's progress bar runs the Qt loop, so the result arrived while the first
    progress line was being shown, and that line ("preparing N cells (0/3)") stayed."""
    viewer = make_napari_viewer(show=True)  # the activity dock's bars are on screen
    add_smears(viewer)
    _, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")
    widget.method.setCurrentText("PCA")
    for _ in range(2):  # the second map comes from the cache
        widget.project_runner.run_button.click()
        wait_idle(widget.project_runner)
        assert widget.project_runner.status.text() == "PCA projection: done"


def test_compare_cells_in_follows_cells_embedded_again_with_morphology(
        make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch):
    """#27 item 4: cells gathered before their morphology was measured showed "embedding" and
    the map was made from the old table; the embedding dock's new vectors and morphology now
    reach the explorer, which shows and uses the default space (morphology)."""
    from napari_reddino import names as nm
    from napari_reddino.defaults import DEFAULTS
    from napari_reddino.explore import analysis
    from napari_reddino.explore.spaces import space_matrix
    from napari_reddino.progress import run_to_completion
    from napari_reddino.widgets import embedding

    viewer = make_napari_viewer(show=True)
    (_, layer, _), = add_smears(viewer, n_subjects=1)  # known vectors, no morphology yet
    _, explorer = viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")
    assert explorer.space.currentText() == nm.EMBEDDING  # all these cells have
    _, emb = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    monkeypatch.setattr(embedding.QFileDialog, "getExistingDirectory",
                        lambda *args, **kwargs: str(tiny_backbone_dir))
    emb.browse_folder.native.click()
    emb.device.value = "cpu"
    assert emb.labels_combo.value is layer
    emb.runner.run_button.click()
    wait_idle(emb.runner)

    cells = explorer.layer_cells
    assert cells is not None and cells.vectors.shape[1] == 192  # the tiny backbone's vectors
    assert explorer.space.currentText() == DEFAULTS.space == nm.MORPHOLOGY
    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    used = explorer.session.used_mask()
    matrix = space_matrix(cells.table, cells.vectors, nm.MORPHOLOGY, row_column=None)[used]
    expected = run_to_completion(analysis.iter_map(matrix, "pca", explorer.settings()))
    np.testing.assert_allclose(explorer.scatter.points[used], expected, rtol=1e-5, atol=1e-5)
    assert explorer.space.currentText() == nm.MORPHOLOGY
