"""The explorer dock and the command line give the same map and clusters for the same cells
and settings: both go through ``explore.analysis`` (one neighbor graph, one k-means)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.explore.analysis import Settings
from napari_reddino.io.cell_table import load_table

PLUGIN = "napari-reddino"


def _by_cell(table: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return table.set_index([nm.IMAGE, nm.LABEL])[columns].sort_index()


def test_explorer_and_cli_give_the_same_clusters(make_napari_viewer, wait_idle, small_run):
    # the CLI wrote this run with `project --clusters 3 --projection pca` (tests/_runs.py)
    cli = load_table(small_run / nm.CELLS_TABLE_FILE)
    viewer = make_napari_viewer()
    viewer.open(str(small_run), plugin=PLUGIN)
    for layer in viewer.layers:  # forget the CLI's answer the reader brought along
        if nm.CLUSTER in getattr(layer, "features", {}):
            layer.features = layer.features.drop(columns=[nm.CLUSTER, *nm.UMAP])
    _dock, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, "Cell explorer (UMAP)")
    layer_cells = explorer.layer_cells
    assert layer_cells is not None and len(layer_cells) == len(cli) > 10
    assert nm.CLUSTER not in layer_cells.table.columns

    explorer.method.setCurrentText("PCA")
    explorer.project_runner.run_button.click()
    wait_idle(explorer.project_runner)
    explorer.cluster_method.setCurrentText("k-means")
    explorer.n_clusters.setValue(3)
    explorer.cluster_runner.run_button.click()
    wait_idle(explorer.cluster_runner)

    n = len(layer_cells)  # the same settings, neighbor graph included, as `project` used
    assert explorer.settings().for_cells(n) == Settings(n_clusters=3).for_cells(n)
    dock = _by_cell(explorer.layer_cells.public_table(), [nm.CLUSTER, *nm.UMAP])
    ours = _by_cell(cli, [nm.CLUSTER, *nm.UMAP])
    assert list(dock.index) == list(ours.index)
    clustered = ours[nm.CLUSTER][ours[nm.CLUSTER] >= 0]  # -1: not counted, not clustered
    assert len(np.unique(clustered)) == 3 and len(clustered) < len(ours)
    np.testing.assert_array_equal(dock[nm.CLUSTER].to_numpy(dtype=np.int64),
                                  ours[nm.CLUSTER].to_numpy(dtype=np.int64))
    np.testing.assert_allclose(dock[list(nm.UMAP)].to_numpy(np.float64),
                               ours[list(nm.UMAP)].to_numpy(np.float64), rtol=1e-4, atol=1e-4)
