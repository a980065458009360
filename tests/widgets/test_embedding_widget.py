"""The "Embed smear (RedDino)" dock: backbone from a local folder, PCA overlay, cell vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from napari.layers import Image
from qtpy.QtCore import Qt

from napari_reddino.io.cell_table import CellEmbeddings
from napari_reddino.segment import dispatch
from napari_reddino.synthetic import smear as synthetic
from napari_reddino.widgets import embedding as embedding_module
from napari_reddino.widgets.embedding import EmbeddingWidget

PATCH = 14  # the tiny test backbone is a ViT/14
DIM = 192


def _click(qtbot, button) -> None:
    qtbot.mouseClick(getattr(button, "native", button), Qt.MouseButton.LeftButton)


def _open_dock(viewer) -> EmbeddingWidget:
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    return widget


def _segmented_smear(viewer, shape, seed, name="smear", **layer_kwargs):
    """An image layer and its ``"<name> labels"`` layer, as the segmentation dock makes them."""
    smear = synthetic.synthetic_smear(shape, seed=seed, name=name)
    result = dispatch.segment(smear.image, "classical", image_name=name, subject="s1")
    image = viewer.add_image(smear.image, name=name, metadata=dict(smear.metadata), **layer_kwargs)
    labels = viewer.add_labels(
        result.labels, name=f"{name} labels", features=result.features, **layer_kwargs
    )
    return image, labels


def _choose_local_folder(qtbot, widget, folder, monkeypatch) -> None:
    """Browse folder... -> the user picks the exported backbone folder."""
    monkeypatch.setattr(
        embedding_module.QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder)
    )
    _click(qtbot, widget.browse_folder)
    assert widget.backbone.value == f"local-dir:{folder}"


def test_overlay_and_cell_embeddings_from_a_local_backbone(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch, tmp_path
):
    viewer = make_napari_viewer()
    image, labels = _segmented_smear(viewer, (280, 322), seed=2)
    n_cells = len(labels.features)
    assert n_cells >= 5
    widget = _open_dock(viewer)
    assert widget.image_combo.value is image
    assert widget.labels_combo.value is labels  # "<image> labels" preselected
    _choose_local_folder(qtbot, widget, tiny_backbone_dir, monkeypatch)
    widget.device.value = "cpu"
    widget.pooling.value = "patch_mean"
    widget.overlay_detail.value = 1  # one tiling: the patch-resolution overlay

    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    overlay = viewer.layers["smear RedDino PCA"]
    assert isinstance(overlay, Image) and overlay.rgb
    assert overlay.data.shape == (math.ceil(280 / PATCH), math.ceil(322 / PATCH), 3)
    assert overlay.data.min() >= 0.0 and overlay.data.max() <= 1.0
    np.testing.assert_allclose(overlay.scale, (PATCH, PATCH))
    np.testing.assert_allclose(overlay.translate, ((PATCH - 1) / 2, (PATCH - 1) / 2))
    # grid cell (i, j) is drawn centered on image pixels [i*p, (i+1)*p) x [j*p, (j+1)*p)
    center = np.asarray(overlay.data_to_world((3, 5)))
    np.testing.assert_allclose(image.world_to_data(center), (3 * PATCH + 6.5, 5 * PATCH + 6.5))

    cells = labels.metadata["reddino_embeddings"]
    assert isinstance(cells, CellEmbeddings)
    assert cells.vectors.shape == (n_cells, DIM)
    assert cells.pooling == "patch_mean"
    assert set(cells.image) == {image.metadata["image"]}
    rows = labels.features["embedding_row"].to_numpy()
    np.testing.assert_array_equal(cells.label[rows], labels.features["label"].to_numpy())

    widget.opacity.value = 0.25
    assert overlay.opacity == pytest.approx(0.25)
    widget.overlay.value = False
    assert not overlay.visible

    saved = tmp_path / "smear.reddino.npz"
    monkeypatch.setattr(
        embedding_module.QFileDialog, "getSaveFileName", lambda *args, **kwargs: (str(saved), "")
    )
    _click(qtbot, widget.save_button)
    assert saved.is_file()
    labels.metadata = {}
    labels.features = labels.features.drop(columns="embedding_row")
    monkeypatch.setattr(
        embedding_module.QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(saved), "")
    )
    _click(qtbot, widget.load_button)
    np.testing.assert_array_equal(labels.metadata["reddino_embeddings"].vectors, cells.vectors)
    np.testing.assert_array_equal(labels.features["embedding_row"].to_numpy(), rows)


def test_cls_crop_on_a_scaled_layer_fitting_pca_on_cells(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch
):
    viewer = make_napari_viewer()
    image, labels = _segmented_smear(
        viewer, (196, 196), seed=4, name="scaled", scale=(0.5, 0.5), translate=(10.0, 20.0)
    )
    widget = _open_dock(viewer)
    _choose_local_folder(qtbot, widget, tiny_backbone_dir, monkeypatch)
    widget.device.value = "cpu"
    widget.foreground_only.value = True
    widget.overlay_detail.value = 1
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    overlay = viewer.layers["scaled RedDino PCA"]
    assert overlay.data.shape == (14, 14, 3)
    np.testing.assert_allclose(overlay.scale, (7.0, 7.0))  # image scale x patch size
    np.testing.assert_allclose(overlay.translate, (10.0 + 3.25, 20.0 + 3.25))
    # the overlay covers exactly the smear: outer pixel corners coincide in world coordinates
    np.testing.assert_allclose(
        overlay.data_to_world((-0.5, -0.5)), image.data_to_world((-0.5, -0.5))
    )
    np.testing.assert_allclose(
        overlay.data_to_world((13.5, 13.5)), image.data_to_world((195.5, 195.5))
    )
    cells = labels.metadata["reddino_embeddings"]
    assert cells.pooling == "cls_crop"
    assert cells.vectors.shape == (len(labels.features), DIM)
    assert np.isfinite(cells.vectors).all()


def test_cancel_embedding_leaves_layers_untouched(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch
):
    viewer = make_napari_viewer()
    _image, labels = _segmented_smear(viewer, (448, 448), seed=5)
    widget = _open_dock(viewer)
    _choose_local_folder(qtbot, widget, tiny_backbone_dir, monkeypatch)
    widget.device.value = "cpu"
    outcomes = []
    widget.runner.finished.connect(outcomes.append)
    _click(qtbot, widget.runner.run_button)
    _click(qtbot, widget.runner.cancel_button)
    wait_idle(widget.runner)
    assert outcomes == ["cancelled"]
    assert "smear RedDino PCA" not in viewer.layers
    assert "reddino_embeddings" not in labels.metadata
    assert "embedding_row" not in labels.features.columns


def test_bad_choices_give_notifications(
    make_napari_viewer, qtbot, wait_idle, error_messages, tmp_path
):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="plain")
    widget = _open_dock(viewer)
    widget.foreground_only.value = True  # no labels: cells are the Otsu foreground, none here
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    assert error_messages() == [
        "Embedding failed: fewer than 3 grid cells fall on cells: nothing to fit a PCA on"]

    widget.foreground_only.value = False
    widget.labels_combo.value = viewer.add_labels(np.zeros((32, 32), np.int32), name="other")
    _click(qtbot, widget.runner.run_button)
    assert "do not match image" in error_messages()[-1]

    widget.labels_combo.value = viewer.add_labels(np.zeros((64, 64), np.int32), name="drawn")
    _click(qtbot, widget.runner.run_button)
    assert "have no cell table" in error_messages()[-1]

    widget.labels_combo.value = None
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    widget.set_backbone_source(str(broken))
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    assert error_messages()[-1].startswith("Embedding failed: ")
    assert "broken.pth" in error_messages()[-1]
    assert "plain RedDino PCA" not in viewer.layers
    assert len(error_messages()) == 4


def test_official_pth_checkpoint_is_converted_and_used(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone, monkeypatch, tmp_path
):
    import torch

    from napari_reddino.embed import grid
    teacher = {f"backbone.{k}": v.clone() for k, v in tiny_backbone.model.state_dict().items()}
    teacher["backbone.mask_token"] = torch.zeros(1, DIM)
    checkpoint = tmp_path / "dinobloom-like.pth"
    torch.save({"teacher": teacher}, checkpoint)

    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((196, 224), seed=6)
    viewer.add_image(smear.image, name="smear")
    widget = _open_dock(viewer)
    monkeypatch.setattr(
        embedding_module.QFileDialog,
        "getOpenFileName",
        lambda *args, **kwargs: (str(checkpoint), ""),
    )
    _click(qtbot, widget.browse_pth)
    assert widget.backbone.value == str(checkpoint)
    widget.device.value = "cpu"
    widget.overlay_detail.value, widget.foreground_only.value = 1, False  # plain patch PCA
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    assert (tmp_path / "dinobloom-like-timm" / "config.json").is_file()  # converted once
    expected = grid.pca_rgb(grid.patch_grid(smear.image, tiny_backbone))
    np.testing.assert_allclose(viewer.layers["smear RedDino PCA"].data, expected, atol=1e-3)


@pytest.mark.parametrize("pooling", ["cls_crop", "patch_mean"])
def test_the_dock_and_the_pipeline_give_the_same_vectors_and_morphology(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, pooling
):
    from napari_reddino.morphology.features import feature_columns
    from napari_reddino.runs.pipeline import cached_backbone, process_smear

    source = f"local-dir:{tiny_backbone_dir}"
    smear = synthetic.synthetic_smear((196, 224), seed=8, name="same")
    expected = process_smear(smear.image, cached_backbone(source, "cpu"), image_name="same",
                             subject="s1", pooling=pooling, pixel_size=0.5)
    morph = feature_columns(expected.table.columns)
    assert len(expected.table) >= 5 and len(morph) > 30
    viewer = make_napari_viewer()
    image = viewer.add_image(smear.image, name="same", scale=(0.5, 0.5))  # 0.5 µm per pixel
    cells = expected.table.drop(columns=[*morph, "embedding_row"])
    labels = viewer.add_labels(expected.labels, name="same labels", features=cells,
                               scale=(0.5, 0.5))
    widget = _open_dock(viewer)
    assert widget.image_combo.value is image and widget.labels_combo.value is labels
    widget.set_backbone_source(source)
    widget.device.value, widget.pooling.value, widget.overlay.value = "cpu", pooling, False
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    got = labels.metadata["reddino_embeddings"]
    np.testing.assert_array_equal(got.label, expected.embeddings.label)
    np.testing.assert_allclose(got.vectors, expected.embeddings.vectors, atol=1e-5)
    mine = labels.features.set_index("label")[morph]
    theirs = expected.table.set_index("label")[morph]
    np.testing.assert_allclose(mine.loc[theirs.index].to_numpy(), theirs.to_numpy(), rtol=1e-9)


def test_saved_cells_reopen_in_a_new_viewer_with_every_column(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir, monkeypatch, tmp_path
):
    """#25: Save writes the layer's cells as .h5ad; Load in a new viewer (segmented again the
    same way) brings back the morphology, the classes and the vectors, so the default
    (morphology) space works at once."""
    viewer = make_napari_viewer()
    _image, labels = _segmented_smear(viewer, (200, 200), seed=3)
    widget = _open_dock(viewer)
    _choose_local_folder(qtbot, widget, tiny_backbone_dir, monkeypatch)
    widget.device.value = "cpu"
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    features = labels.features.copy()
    features["class"] = ["target"] + [None] * (len(features) - 1)
    labels.features = features
    saved = tmp_path / "smear.reddino.h5ad"
    monkeypatch.setattr(embedding_module.QFileDialog, "getSaveFileName",
                        lambda *a, **k: (str(saved), ""))
    _click(qtbot, widget.save_button)
    assert saved.is_file()

    other = make_napari_viewer()
    _image2, labels2 = _segmented_smear(other, (200, 200), seed=3)
    assert not [c for c in labels2.features.columns if c.startswith("morph_")]
    widget2 = _open_dock(other)
    monkeypatch.setattr(embedding_module.QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(saved), ""))
    _click(qtbot, widget2.load_button)
    back = labels2.features
    morph = [c for c in features.columns if c.startswith("morph_")]
    assert len(morph) == 56
    np.testing.assert_allclose(back[morph].to_numpy(), features[morph].to_numpy())
    assert back["class"].iloc[0] == "target"
    cells = labels.metadata["reddino_embeddings"]
    np.testing.assert_allclose(
        labels2.metadata["reddino_embeddings"].vectors[back["embedding_row"]],
        cells.vectors[features["embedding_row"]])
