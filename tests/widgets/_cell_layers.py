"""Synthetic smears as napari layers ready for the explorer / labeling docks.

Each smear comes from the synthetic generator with its truth labels; features are
the real ``cell_table.region_features``; embeddings are either given by ``embed_fn`` (real
``embed.iter_cell_embeddings``) or a known structure: one axis per truth class plus
small noise and a per-subject offset, so clusters == classes and linking tests can
check against truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino.io import cell_table
from napari_reddino.label.classes import DEFAULT_CLASS_SET
from napari_reddino.synthetic import smear as synthetic

KNOWN_DIM = 16


def known_embeddings(
    classes: pd.Series, subject_index: int, seed: int, noise: float = 0.25
) -> np.ndarray:
    """Class one-hot * 4 + subject offset + noise: every class its own blob."""
    rng = np.random.default_rng(seed)
    codes = np.array([DEFAULT_CLASS_SET.index(c) for c in classes])
    vectors = rng.normal(0, noise, size=(len(codes), KNOWN_DIM)).astype(np.float32)
    vectors[np.arange(len(codes)), codes] += 4.0
    vectors[:, -1] += 0.5 * subject_index
    return vectors


def add_smears(
    viewer,
    *,
    n_subjects=2,
    images_per_subject=1,
    shape=(256, 256),
    seed=0,
    embed_fn=None,
    noise=0.25,
):
    """Add image + embedded Labels layers; returns [(image_layer, labels_layer, truth)]."""
    dataset = synthetic.synthetic_dataset(
        n_subjects=n_subjects, images_per_subject=images_per_subject, shape=shape, seed=seed
    )
    subjects = sorted({smear.metadata["subject"] for smear in dataset})
    added = []
    for i, smear in enumerate(dataset):
        name, subject = smear.metadata["image"], smear.metadata["subject"]
        features = cell_table.region_features(
            smear.labels, smear.image, image_name=name, subject=subject
        )
        truth = smear.cells.set_index("label")["class"].reindex(features["label"]).to_numpy()
        if embed_fn is None:
            vectors = known_embeddings(pd.Series(truth), subjects.index(subject), seed + i, noise)
            embeddings = cell_table.CellEmbeddings(
                vectors,
                np.full(len(features), name),
                features["label"].to_numpy(),
                backbone="known-structure",
                pooling="truth",
            )
        else:
            embeddings = embed_fn(smear.image, smear.labels, name)
        features["index"] = features["label"]
        features["embedding_row"] = embeddings.rows_for(name, features["label"].to_numpy())
        image_layer = viewer.add_image(smear.image, name=name, rgb=True)
        labels_layer = viewer.add_labels(
            smear.labels,
            name=f"{name} labels",
            features=features,
            metadata={
                "image": name,
                "image_layer": name,
                "subject": subject,
                "reddino_embeddings": embeddings,
            },
        )
        added.append((image_layer, labels_layer, pd.Series(truth, index=features["label"])))
    return added
