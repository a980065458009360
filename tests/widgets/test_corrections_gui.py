"""Correct a segmentation in napari and everything follows (#29), driven as a user would:
segment and embed through the docks, map the cells in the explorer, then erase half a cell,
paint a new one, merge two and split one with the segmentation dock's clicks, and undo.

Truth after every step: the rows a fresh measurement of the labels on screen gives (every cell
measured from scratch), the explorer's points one per cell, and the counts of that table.
"""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import Qt
from scipy import ndimage as ndi

from napari_reddino import names as nm
from napari_reddino.plugin.session import session_for
from napari_reddino.runs.corrections import measure_cells
from napari_reddino.segment.counted import add_counted
from napari_reddino.synthetic import smear as synthetic
from napari_reddino.widgets import embedding as embedding_module
from napari_reddino.widgets._corrections import follow

FOLLOW_MS = 60_000


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-reddino", name)[1]


def _click(qtbot, button) -> None:
    qtbot.mouseClick(getattr(button, "native", button), Qt.MouseButton.LeftButton)


@pytest.fixture
def corrected(make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch):
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((240, 240), seed=5, name="smear")
    image = viewer.add_image(smear.image, name="smear", metadata=dict(smear.metadata))
    segment = _dock(viewer, "Segment cells")
    _click(qtbot, segment.runner.run_button)
    wait_idle(segment.runner)
    labels = viewer.layers["smear labels"]
    embed = _dock(viewer, "Embed smear (RedDino)")
    monkeypatch.setattr(embedding_module.QFileDialog, "getExistingDirectory",
                        lambda *a, **k: str(tiny_backbone_dir))
    _click(qtbot, embed.browse_folder)
    embed.device.value = "cpu"
    embed.pooling.value = "cls_crop"
    _click(qtbot, embed.runner.run_button)
    wait_idle(embed.runner)
    explorer = _dock(viewer, "Cell explorer (UMAP)")
    explorer.refresh()
    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    return viewer, image, labels, segment, explorer


def _settle(qtbot, viewer, labels):
    follower = follow(viewer, labels)
    qtbot.wait(50)
    qtbot.waitUntil(lambda: follower.idle, timeout=FOLLOW_MS)


def _check(viewer, image, labels, explorer):
    """The table, the map and the counts agree with the pixels on screen."""
    data = np.asarray(labels.data)
    ids = np.unique(data)[1:]
    features = labels.features
    assert features[nm.LABEL].tolist() == ids.tolist()
    assert features[nm.AREA].to_numpy().tolist() == np.bincount(data.ravel())[ids].tolist()
    truth = add_counted(measure_cells(data, image.data, ids, image_name="smear"))
    for column in ("morph_area", "morph_elongation", "morph_ring_5"):
        assert features[column].tolist() == pytest.approx(truth[column].tolist()), column
    assert features[nm.KIND].tolist() == truth[nm.KIND].tolist()
    session = session_for(viewer)
    assert session.counted_summary() == (f"{int(truth[nm.COUNTED].sum())} of {len(ids)} "
                                         "objects counted")
    layer_cells = session.layer_cells
    assert layer_cells is not None and len(layer_cells) == len(ids)
    assert len(explorer.scatter.points) == len(ids)
    vectors = labels.metadata[nm.EMBEDDINGS_KEY]
    rows = features[nm.EMBEDDING_ROW].to_numpy()
    assert vectors.label[rows].tolist() == ids.tolist() and np.isfinite(vectors.vectors).all()
    return features.set_index(nm.LABEL)


def _deepest(mask):
    return np.unravel_index(np.argmax(ndi.distance_transform_edt(mask)), mask.shape)


def _whole_cells(features, n):
    inner = features[~features[nm.TOUCHES_BORDER] & (features[nm.KIND] == "rbc")]
    inner = inner[inner[nm.AREA] > inner[nm.AREA].median() * 0.8]
    return inner[nm.LABEL].astype(int).tolist()[:n]


def test_erase_paint_merge_split_and_undo_keep_everything_true(corrected, qtbot):
    viewer, image, labels, segment, explorer = corrected
    start = _check(viewer, image, labels, explorer)
    a, b, c = _whole_cells(labels.features, 3)

    # 1. the eraser over the lower half of cell a (what napari's eraser writes, undoably)
    data = np.asarray(labels.data)
    ys, xs = np.nonzero(data == a)
    lower = ys > np.median(ys)
    labels.data_setitem((ys[lower], xs[lower]), 0)
    _settle(qtbot, viewer, labels)
    rows = _check(viewer, image, labels, explorer)
    assert rows.loc[a, nm.AREA] == (~lower).sum() and rows.loc[a, nm.EDITED]
    assert np.isfinite(rows.loc[a, list(nm.UMAP)].to_numpy(float)).all()

    # 2. the brush paints a new cell on empty glass (preserve labels: neighbors untouched)
    new = int(np.asarray(labels.data).max()) + 1
    glass = _deepest(np.asarray(labels.data) == 0)
    labels.preserve_labels = True
    labels.brush_size = 15
    labels.selected_label = new
    labels.paint(glass, new)
    _settle(qtbot, viewer, labels)
    rows = _check(viewer, image, labels, explorer)
    assert new in rows.index and rows.loc[new, nm.EDITED]

    # 3. merge b and c by clicking them in the dock's pick mode
    panel = segment.corrections
    panel.pick_button.setChecked(True)
    for cell in (b, c):
        assert panel.pick_at(labels.data_to_world(_deepest(np.asarray(labels.data) == cell))) \
            == cell
    _click(qtbot, panel.merge_button)
    _settle(qtbot, viewer, labels)
    rows = _check(viewer, image, labels, explorer)
    low, high = sorted((b, c))
    assert high not in rows.index and rows.loc[low, nm.AREA] == (
        start.loc[b, nm.AREA] + start.loc[c, nm.AREA])

    # 4. split it again from one click inside each former cell
    as_segmented = follow(viewer, labels).original
    for cell in (low, high):
        panel.pick_at(labels.data_to_world(_deepest(as_segmented == cell)))
    _click(qtbot, panel.split_button)
    _settle(qtbot, viewer, labels)
    rows = _check(viewer, image, labels, explorer)
    assert low in rows.index and len(rows) == len(start) + 1  # + the new cell; b, c apart
    assert rows.loc[low, nm.AREA] < start.loc[b, nm.AREA] + start.loc[c, nm.AREA]

    # 5. undo the split, the merge, the new cell and the eraser: the rows come back
    for _ in range(4):
        labels.undo()
        _settle(qtbot, viewer, labels)
        _check(viewer, image, labels, explorer)
    rows = _check(viewer, image, labels, explorer)
    assert rows.index.tolist() == start.index.tolist()
    assert rows[nm.AREA].tolist() == start[nm.AREA].tolist()
    assert not rows[nm.EDITED].any()  # back to the segmenter's outlines


@pytest.mark.slow
def test_train_cellpose_from_two_corrected_smears_in_the_dock(make_napari_viewer, qtbot,
                                                              wait_idle, tiny_cellpose,
                                                              monkeypatch, tmp_path):
    from napari_reddino.widgets import segmentation as segmentation_module

    viewer = make_napari_viewer()
    segment = _dock(viewer, "Segment cells")
    for seed in (5, 6):
        smear = synthetic.synthetic_smear((160, 160), seed=seed, name=f"s{seed}")
        image = viewer.add_image(smear.image, name=f"s{seed}", metadata=dict(smear.metadata))
        segment.image_combo.value = image
        _click(qtbot, segment.runner.run_button)
        wait_idle(segment.runner)
        labels = viewer.layers[f"s{seed} labels"]
        cell = int(labels.features[nm.LABEL].iloc[0])
        labels.data_setitem(np.nonzero(np.asarray(labels.data) == cell), 0)  # erased by hand
        _settle(qtbot, viewer, labels)
    monkeypatch.setattr(segmentation_module.QFileDialog, "getExistingDirectory",
                        lambda *a, **k: str(tmp_path / "models"))
    segment.epochs.value = 1
    segment.gpu.value = "off"
    _click(qtbot, segment.train_runner.run_button)
    wait_idle(segment.train_runner)
    assert segment.method.value == "cellpose"
    assert segment.cp_model.value.startswith(str(tmp_path / "models"))
    assert "held-back" in segment.corrections.status.text()
    segment.image_combo.value = viewer.layers["s5"]  # and the dock segments with the result
    _click(qtbot, segment.runner.run_button)
    wait_idle(segment.runner)
    labels = viewer.layers["s5 labels"]
    assert labels.metadata[nm.META_METHOD] == "cellpose"
    assert labels.metadata["params"]["model"] == segment.cp_model.value
