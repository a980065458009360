"""session.py: gathering embedded Labels layers into one cell table, and back (no Qt)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from napari.layers import Labels

from napari_reddino.io import cell_table
from napari_reddino.plugin.session import LayerCells, SessionError, SharedSession, session_for
from napari_reddino.synthetic import smear as synthetic


def _layer(smear, *, dim=8, drop_row=False, seed=0) -> Labels:
    name, subject = smear.metadata["image"], smear.metadata["subject"]
    features = cell_table.region_features(smear.labels, smear.image, image_name=name,
                                          subject=subject)
    rng = np.random.default_rng(seed)
    # embeddings stored in reverse label order: the cells must follow embedding_row, not order
    order = features["label"].to_numpy()[::-1]
    embeddings = cell_table.CellEmbeddings(
        rng.normal(size=(len(order), dim)),
        np.full(len(order), name),
        order,
        backbone="test",
        pooling="cls_crop",
    )
    features["embedding_row"] = embeddings.rows_for(name, features["label"])
    if drop_row:
        features = features.drop(columns="embedding_row")
    return Labels(
        smear.labels,
        name=f"{name} labels",
        features=features,
        metadata={"image": name, "subject": subject, "reddino_embeddings": embeddings},
    )


@pytest.fixture(scope="module")
def smears():
    return synthetic.synthetic_dataset(n_subjects=2, images_per_subject=1, shape=(192, 192), seed=3)


def test_layer_cells_key_every_cell_to_its_own_vector(smears):
    layers = [_layer(s, seed=i) for i, s in enumerate(smears)]
    gathered = LayerCells.from_layers([*layers, Labels(np.zeros((4, 4), int), name="plain")])
    assert len(gathered.layers) == 2  # the plain Labels layer takes no part
    assert len(gathered) == sum(len(layer.features) for layer in layers)
    for i in [0, 5, len(gathered) - 1]:
        row = gathered.table.iloc[i]
        embeddings = gathered.layers[row["_layer"]].metadata["reddino_embeddings"]
        (emb_row,) = embeddings.rows_for(row["image"], [row["label"]])
        np.testing.assert_array_equal(gathered.vectors[i], embeddings.vectors[emb_row])


def test_selection_maps_back_to_layers_and_labels(smears):
    layers = [_layer(s) for s in smears]
    gathered = LayerCells.from_layers(layers)
    wanted = layers[1].features["label"].to_numpy()[[1, 3]]
    indices = gathered.indices_for(layers[1], wanted)
    by_layer = gathered.labels_by_layer(indices)
    assert by_layer[0].size == 0
    np.testing.assert_array_equal(np.sort(by_layer[1]), np.sort(wanted))
    keys = gathered.indices_for_keys([smears[1].metadata["image"], "nope"], [wanted[0], 1])
    assert keys[0] in indices and keys[1] == -1


def test_write_columns_reaches_every_layer(smears):
    layers = [_layer(s) for s in smears]
    gathered = LayerCells.from_layers(layers)
    first = gathered.indices_for(layers[0], layers[0].features["label"][:2])
    gathered.write_columns({"class": np.array(["target", "sickle"], dtype=object)}, first)
    assert list(layers[0].features["class"][:2]) == ["target", "sickle"]
    assert layers[0].features["class"][2:].isna().all()
    assert "class" in layers[1].features and layers[1].features["class"].isna().all()
    gathered.write_columns({"umap_0": np.arange(len(gathered), dtype=np.float32)})
    both = np.concatenate([layer.features["umap_0"] for layer in layers])
    np.testing.assert_array_equal(both, np.arange(len(gathered)))


def test_matches_by_label_without_embedding_row_and_counts_missing(smears):
    layer = _layer(smears[0], drop_row=True)
    embeddings = layer.metadata["reddino_embeddings"]
    keep = embeddings.label != embeddings.label[0]  # one cell lost its embedding
    layer.metadata["reddino_embeddings"] = cell_table.CellEmbeddings(
        embeddings.vectors[keep], embeddings.image[keep], embeddings.label[keep], "test", "x"
    )
    gathered = LayerCells.from_layers([layer])
    assert gathered.skipped == 1 and len(gathered) == len(layer.features) - 1
    assert embeddings.label[0] not in set(gathered.table["label"])


@pytest.mark.parametrize("problem", ["none", "dims", "duplicate", "row"])
def test_bad_layers_give_clear_errors(smears, problem):
    layers = [_layer(smears[0]), _layer(smears[1])]
    if problem == "none":
        layers = [Labels(np.zeros((4, 4), int))]
        message = "no Labels layer with cell features and embeddings"
    elif problem == "dims":
        layers[1] = _layer(smears[1], dim=5)
        message = "same backbone"
    elif problem == "duplicate":
        layers = [_layer(smears[0]), _layer(smears[0])]
        message = "distinct image name"
    else:
        features = layers[0].features.copy()
        features.loc[0, "embedding_row"] = 10_000
        layers[0].features = features
        message = "points past"
    with pytest.raises(SessionError, match=message):
        LayerCells.from_layers(layers)


def test_one_shared_session_per_viewer():
    class Viewer:  # anything weak-referenceable stands in for a napari.Viewer
        pass

    a, b = Viewer(), Viewer()
    assert session_for(a) is session_for(a)
    assert session_for(a) is not session_for(b)
    session: SharedSession = session_for(a)
    seen = []
    session.selection_changed.connect(seen.append)
    session.select([3, 1, 3])
    session.select([1, 3])  # same selection: no second event
    assert len(seen) == 1 and list(seen[0]) == [1, 3]
    pd.testing.assert_index_equal(pd.Index(session.selection), pd.Index([1, 3]))
