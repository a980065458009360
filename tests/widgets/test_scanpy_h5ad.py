"""#25: a cells.h5ad that scanpy rewrote (features in .X, its own results added) opens in the
explorer with the morphology space, the run's map and every smear."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_reddino import names as nm
from napari_reddino.explore.spaces import available_spaces

sc = pytest.importorskip("scanpy")


def test_a_scanpy_written_h5ad_opens_in_the_explorer(small_run, tmp_path, make_napari_viewer):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    adata = sc.read_h5ad(run / nm.ANNDATA_FILE)
    sc.pp.neighbors(adata, use_rep=nm.X_MORPHOLOGY, n_neighbors=5)
    adata.obs["scanpy_group"] = (adata.obsm[nm.X_MORPHOLOGY][:, 0] > 0).astype(str)
    adata.write_h5ad(run / nm.ANNDATA_FILE)  # what a scanpy user saves

    viewer = make_napari_viewer()
    viewer.open(str(run / nm.ANNDATA_FILE), plugin="napari-reddino")
    explorer = viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")[1]
    layer_cells = explorer.layer_cells
    assert layer_cells is not None and len(layer_cells) == adata.n_obs
    assert len(layer_cells.layers) == adata.obs[nm.IMAGE].nunique()
    assert nm.MORPHOLOGY in available_spaces(layer_cells.table, layer_cells.vectors)
    assert explorer.space.currentText() == nm.MORPHOLOGY
    assert "scanpy_group" in layer_cells.table.columns  # the user's own column came along
    morph = [c for c in layer_cells.table.columns if c.startswith("morph_")]
    assert len(morph) == adata.n_vars
    shown = np.isfinite(explorer.scatter.points).all(axis=1).sum()
    assert shown == explorer.session.used_mask().sum()  # the run's map, counted cells on it
