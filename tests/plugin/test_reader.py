"""The npe2 readers on what the CLI writes (no viewer: the layer-data tuples themselves), and
the scanpy-style API on the same run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import napari_reddino as rd
from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import CellEmbeddings, load_table
from napari_reddino.plugin import reader as _reader


def _by_type(layers, kind):
    return [layer for layer in layers if layer[2] == kind]


def test_get_reader_claims_only_our_folders_and_files(small_run, tmp_path):
    smear = next((small_run / "smears").iterdir())
    assert _reader.get_reader(str(small_run)) is _reader.read_run_layers
    assert _reader.get_reader([str(small_run)]) is _reader.read_run_layers
    assert _reader.get_reader(str(smear)) is _reader.read_smear_layers
    assert _reader.get_reader(str(small_run / nm.EMBEDDINGS_FILE)) is _reader.read_npz_layers
    assert _reader.get_reader(str(small_run / nm.ANNDATA_FILE)) is _reader.read_h5ad_layers
    png = next((small_run.parent / "input").glob("*.png"))
    for other in (tmp_path, png, tmp_path / "missing.h5ad", [str(small_run), str(smear)]):
        assert _reader.get_reader(other if isinstance(other, list) else str(other)) is None


def test_run_layers_hold_each_smears_image_and_cells_overlay_on_demand(small_run):
    table = load_table(small_run / nm.CELLS_TABLE_FILE)
    pooled = CellEmbeddings.load(small_run / nm.EMBEDDINGS_FILE)
    layers = _reader.read_run_layers(str(small_run))
    images, labels = _by_type(layers, "image"), _by_type(layers, "labels")
    assert len(labels) == table[nm.IMAGE].nunique() == 2
    assert len(images) == 2  # the photo of each smear: no overlay made while opening
    for data, kwargs, _ in labels:
        meta, features = kwargs["metadata"], kwargs["features"]
        own = table[table[nm.IMAGE] == meta[nm.META_IMAGE]].reset_index(drop=True)
        assert kwargs["name"] == f"{meta[nm.META_IMAGE_LAYER]} labels"
        assert list(features[nm.NAPARI_INDEX]) == list(own[nm.LABEL])
        assert set(own[nm.LABEL]) <= set(np.unique(data))
        vectors = meta[nm.EMBEDDINGS_KEY].vectors[features[nm.EMBEDDING_ROW]]
        np.testing.assert_array_equal(vectors, pooled.vectors[own[nm.EMBEDDING_ROW]])
        photo = next(d for d, k, _ in images if k["name"] == meta[nm.META_IMAGE_LAYER])
        assert photo.shape[:2] == data.shape and photo.dtype == np.uint8
        # the patch-token overlay, made when asked from the grid the run kept, on its smear
        rgb, overlay, kind = _reader.patch_overlay_data(meta, kwargs.get("scale"),
                                                        kwargs.get("translate"))
        assert kind == "image" and overlay["name"] == f"{meta[nm.META_IMAGE_LAYER]} RedDino PCA"
        assert overlay["metadata"][nm.META_IMAGE_LAYER] == meta[nm.META_IMAGE_LAYER]
        shift = np.subtract(overlay["translate"], kwargs.get("translate", (0.0, 0.0)))
        assert overlay["scale"] == (14.0, 14.0) and tuple(shift) == (6.5, 6.5)  # on its smear
        assert rgb.shape[:2] == tuple(-(-np.array(data.shape) // 14)) and rgb.shape[2] == 3
    assert _reader.patch_overlay_data({nm.META_IMAGE: "x.png"}) is None  # not from a run


def test_moved_images_still_open_the_cells(small_run, tmp_path):
    """The run keeps its labels; when the photos moved, the cells open without them."""
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    for marker in run.glob("smears/*/_SUCCESS"):
        marker.write_text(marker.read_text().replace(str(small_run.parent), str(tmp_path / "x")))
    layers = _reader.read_run_layers(str(run))
    assert len(_by_type(layers, "labels")) == 2
    assert not _by_type(layers, "image")  # no photos, and no overlay until asked


def test_smear_folder_and_its_npz_open_the_same_cells(small_run):
    smear = sorted((small_run / "smears").iterdir())[0]
    own = load_table(smear / nm.CELLS_TABLE_FILE)
    for layers in (_reader.read_smear_layers(str(smear)),
                   _reader.read_npz_layers(str(smear / nm.EMBEDDINGS_FILE))):
        (_, kwargs, _), = _by_type(layers, "labels")
        assert list(kwargs["features"][nm.LABEL]) == list(own[nm.LABEL])
        assert len(kwargs["metadata"][nm.EMBEDDINGS_KEY]) == len(own)


def test_segment_command_outputs_open_from_their_embeddings(small_run, tmp_path):
    png = sorted((small_run.parent / "input").glob("*.png"))[0]
    shutil.copy(png, tmp_path / png.name)
    assert main(["-q", "segment", str(tmp_path / png.name), "--out", str(tmp_path)]) == 0
    table = load_table(tmp_path / f"{png.stem}_cells.csv")
    vectors = np.random.default_rng(0).random((len(table), 4))
    CellEmbeddings(vectors, table[nm.IMAGE], table[nm.LABEL], "bb", "cls_crop").save(
        tmp_path / f"{png.stem}.reddino.npz")
    layers = _reader.get_reader(str(tmp_path / f"{png.stem}.reddino.npz"))(
        str(tmp_path / f"{png.stem}.reddino.npz"))
    (image, _, _), = _by_type(layers, "image")
    (labels, kwargs, _), = _by_type(layers, "labels")
    assert image.shape[:2] == labels.shape
    rows = kwargs["features"][nm.EMBEDDING_ROW]
    np.testing.assert_allclose(kwargs["metadata"][nm.EMBEDDINGS_KEY].vectors[rows], vectors,
                               rtol=1e-6)


def test_h5ad_outside_a_run_opens_cell_centers(small_run, tmp_path):
    shutil.copy(small_run / nm.ANNDATA_FILE, tmp_path / "cells.h5ad")
    table = load_table(small_run / nm.CELLS_TABLE_FILE)
    layers = _reader.read_h5ad_layers(str(tmp_path / "cells.h5ad"))
    assert len(layers) == 2 and {kind for *_, kind in layers} == {"points"}
    for coords, kwargs, _ in layers:
        own = table[table[nm.IMAGE] == kwargs["metadata"][nm.META_IMAGE]]
        np.testing.assert_allclose(coords, own[[nm.CENTROID_Y, nm.CENTROID_X]].to_numpy())
    # inside the run folder the same file opens the run itself
    assert len(_by_type(_reader.read_h5ad_layers(str(small_run / nm.ANNDATA_FILE)),
                        "labels")) == 2


def test_public_api_writes_under_documented_keys(small_run, tmp_path):
    from napari_reddino.explore.clusters import cluster
    from napari_reddino.explore.spaces import space_matrix
    from napari_reddino.runs.anndata_io import obs_with_features
    from napari_reddino.segment.counted import counted_mask

    assert {"tl", "read_run", "write_run", "names"} <= set(dir(rd))
    adata = rd.read_run(small_run)
    rd.tl.project(adata, "pca")
    assert adata.obsm["X_pca"].shape == (adata.n_obs, 2)
    rd.tl.cluster(adata, n_clusters=3, random_state=0)  # in the default space, as the CLI
    morphology = space_matrix(obs_with_features(adata), None, "morphology", row_column=None)
    np.testing.assert_allclose(morphology, adata.obsm[nm.X_MORPHOLOGY], atol=1e-6)
    counted = counted_mask(obs_with_features(adata))  # only intact red cells are clustered
    assert 0 < counted.sum() < adata.n_obs
    expected = np.full(adata.n_obs, -1)
    expected[counted] = cluster(morphology[counted], n_clusters=3, random_state=0)
    assert list(adata.obs[nm.CLUSTER].astype(int)) == list(expected)
    rd.tl.cluster(adata, use_rep=nm.X_EMBEDDING, key_added="by_embedding", n_clusters=3)
    expected[counted] = cluster(adata.obsm[nm.X_EMBEDDING][counted], n_clusters=3,
                                random_state=0)
    assert list(adata.obs["by_embedding"].astype(int)) == list(expected)
    first = adata.obs[nm.CLUSTER].astype(int).to_numpy()
    seeds = [np.flatnonzero(first == c)[0] for c in range(3)]
    labels = np.full(adata.n_obs, None, dtype=object)
    labels[seeds] = ["a", "b", "c"]
    result = rd.tl.propagate(adata, labels, k=3)
    assert adata.obs[nm.CLASS].notna().to_numpy()[counted].all()  # intact red cells only
    assert adata.obs[nm.CLASS].isna().to_numpy()[~counted].all()
    assert (adata.obs[nm.CLASS_SOURCE] == nm.MANUAL).sum() == 3
    assert result.confidence.shape == (adata.n_obs,)
    report = rd.tl.batch_metrics(adata, k=5)
    assert adata.uns["batch_metrics"] and len(report.per_subject) == 2
    folder = rd.write_run(adata, tmp_path / "api")
    classes = adata.obs[nm.CLASS]
    assert list(load_table(folder / nm.CELLS_TABLE_FILE)[nm.CLASS]) == list(
        classes.astype(object).where(classes.notna(), None))
    with pytest.raises(KeyError, match="X_nothing"):
        rd.tl.project(adata, use_rep="X_nothing")


def test_layer_builders_follow_the_image_scale_and_split_pooled_tables():
    import pandas as pd

    from napari_reddino.plugin.layers import labels_layer_data, overlay_layer_data

    grid = np.random.default_rng(0).random((4, 5, 8)).astype(np.float32)
    rgb, kwargs, kind = overlay_layer_data(grid, 14, image_layer="s", scale=(0.5, 0.5),
                                           translate=(10.0, 20.0))
    assert kind == "image" and rgb.shape == (4, 5, 3) and kwargs["name"] == "s RedDino PCA"
    assert kwargs["scale"] == (7.0, 7.0) and kwargs["translate"] == (13.25, 23.25)
    table = pd.DataFrame({"label": [1, 2, 1], "image": ["a", "a", "b"], "subject": "x",
                          "embedding_row": [2, 0, 1]})
    pooled = CellEmbeddings(np.arange(6, dtype=np.float32).reshape(3, 2), ["a", "b", "a"],
                            [2, 1, 1], "bb", "cls_crop")
    labels = np.array([[0, 1], [2, 2]])
    data, kwargs, kind = labels_layer_data(labels, table, pooled, image_name="a",
                                           image_layer="a", scale=(0.5, 0.5))
    features, own = kwargs["features"], kwargs["metadata"][nm.EMBEDDINGS_KEY]
    assert kind == "labels" and kwargs["scale"] == (0.5, 0.5) and data is not None
    assert list(features.columns[:2]) == [nm.NAPARI_INDEX, nm.LABEL]
    assert list(features[nm.LABEL]) == [1, 2] and list(features[nm.EMBEDDING_ROW]) == [0, 1]
    np.testing.assert_array_equal(own.vectors, [[4, 5], [0, 1]])  # a:1 was row 2, a:2 row 0
    np.testing.assert_array_equal(own.label, [1, 2])
