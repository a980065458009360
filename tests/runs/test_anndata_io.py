"""cells.h5ad: what `napari-reddino project`/`run` write, read back here and by scanpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.explore.spaces import standardize
from napari_reddino.io.cell_table import CellEmbeddings, load_table
from napari_reddino.runs import anndata_io
from napari_reddino.runs.anndata_io import obs_with_features

anndata = pytest.importorskip("anndata")


@pytest.fixture
def run_dir(small_run):
    return small_run


def test_cli_writes_h5ad_matching_the_parquet_table(run_dir):
    table = load_table(run_dir / nm.CELLS_TABLE_FILE)
    embeddings = CellEmbeddings.load(run_dir / nm.EMBEDDINGS_FILE)
    adata = anndata.read_h5ad(run_dir / nm.ANNDATA_FILE)
    assert adata.n_obs == len(table) > 10
    assert list(adata.obs_names[:2]) == [f"{i}:{lab}" for i, lab in
                                         zip(table["image"][:2], table["label"][:2])]
    for column in (nm.IMAGE, nm.SUBJECT):
        assert isinstance(adata.obs[column].dtype, pd.CategoricalDtype)
        assert list(adata.obs[column].astype(str)) == list(table[column].astype(str))
    vectors = embeddings.vectors[table[nm.EMBEDDING_ROW].to_numpy()]
    np.testing.assert_array_equal(adata.obsm[nm.X_EMBEDDING], vectors)
    # `project --projection pca` keeps its map in umap_0/1: AnnData names it after its method
    np.testing.assert_allclose(adata.obsm["X_pca"], table[list(nm.UMAP)].to_numpy(), rtol=1e-6)
    features = list(adata.uns[nm.UNS_MORPHOLOGY_FEATURES])
    assert features == anndata_io.morphology_columns(table) and len(features) >= 7
    for i, name in enumerate(features):  # .X holds the raw values, obsm the standardized
        np.testing.assert_allclose(adata.X[:, i], table[name].to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(adata.obsm[nm.X_MORPHOLOGY],
                               standardize(table[features].to_numpy()), rtol=1e-5, atol=1e-6)
    assert adata.uns[nm.UNS_BACKBONE] == embeddings.backbone
    assert adata.uns[nm.UNS_POOLING] == "patch_mean"
    assert isinstance(adata.obs[nm.CLUSTER].dtype, pd.CategoricalDtype)
    np.testing.assert_array_equal(adata.obs[nm.CLUSTER].astype(int).to_numpy(),
                                  table[nm.CLUSTER].to_numpy())


@pytest.mark.slow  # scanpy's UMAP compiles numba kernels (~25 s on 2 cores)
def test_scanpy_builds_neighbors_and_umap_from_the_embedding(run_dir):
    sc = pytest.importorskip("scanpy")
    adata = sc.read_h5ad(run_dir / nm.ANNDATA_FILE)
    sc.pp.neighbors(adata, use_rep=nm.X_EMBEDDING, n_neighbors=5)
    assert adata.obsp["connectivities"].shape == (adata.n_obs, adata.n_obs)
    sc.tl.umap(adata, random_state=0)
    assert adata.obsm["X_umap"].shape == (adata.n_obs, 2)
    assert np.isfinite(adata.obsm["X_umap"]).all()


def test_round_trip_keeps_table_classes_and_vectors(tmp_path):
    rng = np.random.default_rng(0)
    table = pd.DataFrame({
        "label": np.arange(1, 7), "image": ["a.png"] * 3 + ["b.png"] * 3,
        "subject": ["s1"] * 3 + ["s2"] * 3, "centroid_y": rng.random(6),
        "centroid_x": rng.random(6), "area": rng.random(6) * 100,
        "class": ["normal", None, "macrocyte", None, None, "normal"],
        "umap_0": rng.random(6), "umap_1": rng.random(6),
    })
    vectors = rng.random((6, 4)).astype(np.float32)
    adata = anndata_io.to_anndata(table, vectors, backbone="bb", pooling="cls_crop",
                                  projection="umap")
    assert adata.uns[nm.UNS_CLASS_COLORS] == ["#f0e442", "#332288"]  # chula set: macrocyte, normal
    path = anndata_io.write_h5ad(adata, tmp_path / "cells.h5ad")
    back, embeddings = anndata_io.from_anndata(anndata_io.read_h5ad(path))
    for column in ("label", "image", "subject", "area"):
        np.testing.assert_array_equal(back[column].to_numpy(), table[column].to_numpy())
    np.testing.assert_allclose(back[list(nm.UMAP)], table[list(nm.UMAP)], rtol=1e-6)  # float32
    assert back["class"].tolist() == table["class"].tolist()
    np.testing.assert_array_equal(embeddings.vectors[back[nm.EMBEDDING_ROW]], vectors)
    assert (embeddings.backbone, embeddings.pooling) == ("bb", "cls_crop")
    with pytest.raises(ValueError, match="3 vectors for 6 cells"):
        anndata_io.to_anndata(table, vectors[:3])


def test_benchmark_scores_labeled_centers_from_a_run_folder(run_dir, tmp_path):
    """benchmarks/real_cells_run.py: each center goes to the cell whose mask holds it, and each
    space's rows are those the CLI's space_matrix gives on all cells of the run."""
    import sys
    from pathlib import Path

    from napari_reddino.explore.spaces import space_matrix
    from napari_reddino.runs.pipeline import load_smear_outputs, smear_dir

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from real_cells_run import load_run

    table = load_table(run_dir / nm.CELLS_TABLE_FILE)
    image = str(table[nm.IMAGE].iloc[0])
    labels = load_smear_outputs(smear_dir(run_dir, image))[3]
    chosen = [int(v) for v in table.loc[table[nm.IMAGE] == image, nm.LABEL][:5]]
    rows = [np.argwhere(labels == lab)[len(np.argwhere(labels == lab)) // 2] for lab in chosen]
    background = np.argwhere(labels == 0)[0]
    centers = pd.DataFrame({"image": image, "x": [c[1] for c in [*rows, background]],
                            "y": [c[0] for c in [*rows, background]],
                            "class_name": ["a", "b", "a", "b", "a", "a"]})
    centers.loc[len(centers)] = ["missing.png", 1, 1, "a"]  # a smear the run does not hold
    centers.to_csv(tmp_path / "labels.csv", index=False)
    data = load_run(run_dir, tmp_path / "labels.csv", generic=False, log=lambda m: None)
    cells = data["cells"].set_index(["image", "x", "y"]).loc[
        list(zip(centers["image"], centers["x"], centers["y"]))]
    assert list(cells["cell"]) == [*chosen, 0, 0] and (cells["row"].to_numpy()[5:] == -1).all()
    adata = anndata.read_h5ad(run_dir / nm.ANNDATA_FILE)
    obs = obs_with_features(adata)  # the morphology features live in .X
    matched = cells["row"].to_numpy()[:5]
    assert list(obs[nm.LABEL].to_numpy()[matched]) == chosen
    assert (obs[nm.IMAGE].astype(str).to_numpy()[matched] == image).all()
    for space in (nm.EMBEDDING, nm.MORPHOLOGY, nm.BOTH):  # rows in labels.csv order
        full = space_matrix(obs, adata.obsm[nm.X_EMBEDDING], space, row_column=None)
        np.testing.assert_allclose(data["spaces"][space], full[matched], rtol=1e-6)
