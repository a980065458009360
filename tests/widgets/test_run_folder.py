"""A run written by the CLI opens through the plugin's reader where the docks left off; the
explorer and labeling docks work on it; the writers round-trip it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from app_model.types import KeyBinding
from napari.layers import Image, Labels
from napari.plugins.io import save_layers

from napari_reddino import names as nm
from napari_reddino.io.cell_table import CellEmbeddings, load_table
from napari_reddino.widgets.explorer import ExplorerWidget
from napari_reddino.widgets.labeling import LabelingWidget

PLUGIN = "napari-reddino"


@pytest.fixture
def run_dir(small_run):
    return small_run


def _labels_layers(viewer) -> list[Labels]:
    return [layer for layer in viewer.layers if isinstance(layer, Labels)]


def _check_cells(layer: Labels, table: pd.DataFrame, pooled: CellEmbeddings) -> None:
    """The layer holds exactly its image's rows of the run, each with its own vector."""
    features = layer.features
    own = table[table[nm.IMAGE] == layer.metadata[nm.META_IMAGE]].sort_values(nm.LABEL)
    assert list(features[nm.LABEL]) == list(own[nm.LABEL]) and len(own) > 3
    np.testing.assert_array_equal(features[nm.NAPARI_INDEX], features[nm.LABEL])
    assert set(features[nm.LABEL]) <= set(np.unique(layer.data)) - {0}
    mine = layer.metadata[nm.EMBEDDINGS_KEY].vectors[features[nm.EMBEDDING_ROW].to_numpy()]
    np.testing.assert_array_equal(mine, pooled.vectors[own[nm.EMBEDDING_ROW].to_numpy()])
    for column in (nm.SUBJECT, nm.CLUSTER, *nm.UMAP):
        np.testing.assert_array_equal(features[column].to_numpy(), own[column].to_numpy())


def test_run_opens_where_the_docks_left_off_and_the_docks_work(make_napari_viewer, qtbot,
                                                                wait_idle, run_dir):
    viewer = make_napari_viewer()
    viewer.open(str(run_dir), plugin=PLUGIN)
    table = load_table(run_dir / nm.CELLS_TABLE_FILE)
    pooled = CellEmbeddings.load(run_dir / nm.EMBEDDINGS_FILE)
    labels = _labels_layers(viewer)
    assert sorted(la.metadata[nm.META_IMAGE] for la in labels) == sorted(set(table[nm.IMAGE]))
    for layer in labels:
        _check_cells(layer, table, pooled)
        image = viewer.layers[layer.metadata[nm.META_IMAGE_LAYER]]
        assert isinstance(image, Image) and image.data.shape[:2] == layer.data.shape
        assert f"{image.name} RedDino PCA" not in viewer.layers  # overlays come when asked
    explorer, labeling = ExplorerWidget(viewer), LabelingWidget(viewer)
    qtbot.addWidget(explorer)
    qtbot.addWidget(labeling)
    # the run's map is shown at once, cell for cell
    assert len(explorer.layer_cells) == len(table)
    np.testing.assert_allclose(explorer.scatter.points, explorer.layer_cells.table[list(nm.UMAP)])
    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    explorer.n_clusters.setValue(3)
    explorer.cluster_runner.run_button.click()
    wait_idle(explorer.cluster_runner)
    clusters = explorer.layer_cells.table[nm.CLUSTER].to_numpy()
    explorer.group_click.setChecked(True)
    explorer.scatter.select([0])  # a click on point 0 selects its cluster
    members = np.flatnonzero(clusters == clusters[0])
    np.testing.assert_array_equal(labeling.session.selection, members)
    first, second = labeling.classes.class_set.names[:2]
    viewer.keymap[KeyBinding.from_str("1")](viewer)
    outside = np.flatnonzero(clusters != clusters[0])[0]
    labeling.session.select([outside])
    labeling.classes.set_active(second)
    assert labeling.assign_selection()
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)
    cells = pd.concat([layer.features for layer in labels], ignore_index=True)
    assert cells[nm.CLASS].notna().all() and set(cells[nm.CLASS]) <= {first, second}
    assert (cells[nm.CLASS_SOURCE] == nm.MANUAL).sum() == len(members) + 1

    # the folder writer round-trips labels, cells (with the new classes) and embeddings
    out = run_dir.parent / "written"
    save_layers(str(out), [*labels, *(viewer.layers[la.metadata[nm.META_IMAGE_LAYER]]
                                      for la in labels)], plugin=PLUGIN)
    again = make_napari_viewer()
    again.open(str(out), plugin=PLUGIN)
    back = {la.metadata[nm.META_IMAGE]: la for la in _labels_layers(again)}
    assert set(back) == {la.metadata[nm.META_IMAGE] for la in labels}
    for layer in labels:
        twin = back[layer.metadata[nm.META_IMAGE]]
        np.testing.assert_array_equal(twin.data, layer.data)
        for column in (nm.LABEL, nm.CLASS, nm.CLASS_SOURCE, nm.CLUSTER):
            assert list(twin.features[column]) == list(layer.features[column]), column
        np.testing.assert_array_equal(
            twin.metadata[nm.EMBEDDINGS_KEY].vectors[twin.features[nm.EMBEDDING_ROW]],
            layer.metadata[nm.EMBEDDINGS_KEY].vectors[layer.features[nm.EMBEDDING_ROW]])
        image = again.layers[twin.metadata[nm.META_IMAGE_LAYER]]
        np.testing.assert_array_equal(image.data, viewer.layers[image.name].data)

    # the AnnData writer saves one layer's cells with their classes and vectors
    import anndata

    path = save_layers(str(out / "one.h5ad"), [labels[0]], plugin=PLUGIN)[0]
    adata = anndata.read_h5ad(path)
    assert list(adata.obs[nm.CLASS].astype(str)) == list(labels[0].features[nm.CLASS])
    np.testing.assert_array_equal(
        adata.obsm[nm.X_EMBEDDING],
        labels[0].metadata[nm.EMBEDDINGS_KEY].vectors[labels[0].features[nm.EMBEDDING_ROW]])
