"""A scanpy user opens a run folder's ``cells.h5ad`` and works, without any conversion (#25)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import anndata
import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.explore.spaces import space_matrix, standardize
from napari_reddino.io.cell_table import load_table
from napari_reddino.runs.anndata_io import from_anndata, morphology_columns

sc = pytest.importorskip("scanpy")


@pytest.fixture(scope="module")
def adata(small_run):
    return sc.read_h5ad(small_run / nm.ANNDATA_FILE)


def test_x_holds_the_morphology_features_with_units_and_one_column_per_measure(adata,
                                                                             small_run):
    table = load_table(small_run / nm.CELLS_TABLE_FILE)
    features = morphology_columns(table)
    assert adata.n_vars == len(features) >= 40
    assert "tail_ratio" in adata.var_names and "area" in adata.var_names
    assert {"unit", "family", "description"} <= set(adata.var.columns)
    assert adata.var.loc["area", "unit"] == "px²"
    np.testing.assert_allclose(adata[:, "area"].X.ravel(), table["morph_area"].to_numpy())
    # one perimeter, one solidity: the region table's copies are not repeated in obs
    for column in (nm.AREA, nm.PERIMETER, nm.SOLIDITY, nm.ECCENTRICITY, *features):
        assert column not in adata.obs.columns, column
    np.testing.assert_allclose(adata.obsm[nm.X_MORPHOLOGY],
                               standardize(table[features].to_numpy()), atol=1e-6)


def test_obsm_spatial_categoricals_colors_and_provenance(adata, small_run):
    table = load_table(small_run / nm.CELLS_TABLE_FILE)
    np.testing.assert_allclose(adata.obsm["spatial"],
                               table[[nm.CENTROID_X, nm.CENTROID_Y]].to_numpy(), rtol=1e-6)
    for column in (nm.CLUSTER, nm.SUBJECT, nm.IMAGE, nm.KIND):
        assert isinstance(adata.obs[column].dtype, pd.CategoricalDtype), column
        colors = adata.uns[f"{column}_colors"]
        assert len(colors) == len(adata.obs[column].cat.categories)
        assert all(str(c).startswith("#") for c in colors)
    made = adata.uns[nm.UNS_REDDINO]
    assert made["space"] == nm.MORPHOLOGY
    assert made["neighbors"]["use_rep"] == nm.X_MORPHOLOGY
    assert made["map"]["method"] == "pca"
    assert int(made["clusters"]["n_clusters"]) == 3
    assert made["backbone"]["name"] == adata.uns[nm.UNS_BACKBONE]


def test_scanpy_neighbors_leiden_rank_genes_and_plots_run_as_written(adata, tmp_path):
    a = adata.copy()
    sc.pp.neighbors(a, use_rep=nm.X_MORPHOLOGY, n_neighbors=5)
    pytest.importorskip("leidenalg")
    sc.tl.leiden(a, resolution=0.5, flavor="igraph", n_iterations=2, directed=False)
    assert a.obs["leiden"].nunique() >= 1
    sc.tl.rank_genes_groups(a, "cluster", method="wilcoxon")
    top = pd.DataFrame(a.uns["rank_genes_groups"]["names"]).iloc[0]
    assert set(top) <= set(a.var_names)  # features that mark each cluster, by name
    a.obsm["X_umap"] = a.obsm["X_pca"]  # the run's map (pca here) drawn where sc.pl.umap looks
    figure = sc.pl.umap(a, color="cluster", show=False, return_fig=True)
    legend = figure.axes[0].get_legend()
    assert legend is not None and len(legend.get_texts()) == a.obs["cluster"].nunique()
    axes = sc.pl.violin(a, "tail_ratio", groupby="cluster", show=False)
    assert axes is not None


def test_a_scanpy_written_file_with_features_in_x_reads_back_into_the_morphology_space(
        adata, tmp_path):
    # what a scanpy user saves: features in .X under their own names, no 'column' in .var
    plain = anndata.AnnData(X=np.asarray(adata.X), obs=adata.obs.copy(),
                            var=pd.DataFrame(index=adata.var_names.copy()),
                            obsm={k: v for k, v in adata.obsm.items()})
    path = tmp_path / "from_scanpy.h5ad"
    plain.write_h5ad(path)
    table, embeddings = from_anndata(anndata.read_h5ad(path))
    assert "morph_tail_ratio" in table.columns and nm.AREA in table.columns
    assert embeddings is not None and len(embeddings) == adata.n_obs
    matrix = space_matrix(table, embeddings.vectors, nm.MORPHOLOGY)
    np.testing.assert_allclose(matrix, adata.obsm[nm.X_MORPHOLOGY], atol=1e-5)
    assert table[nm.CLUSTER].dtype == np.int64
