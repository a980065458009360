"""Batch-effect metrics: hand-checked mixing scores and the direction on synthetic subjects."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs

from napari_reddino.explore.batch_effects import batch_metrics, neighbor_indices, subject_mixing

FEATURES = ["area", "perimeter", "eccentricity", "solidity", "mean_r", "mean_g", "mean_b"]


def _synthetic_features(batch_strength: float):
    """Region features (color + shape) of the generator's truth cells, z-scored over all cells."""
    from napari_reddino.io.cell_table import region_features
    from napari_reddino.synthetic.smear import synthetic_dataset

    smears = synthetic_dataset(n_subjects=3, images_per_subject=1, shape=(448, 448), seed=1,
                               batch_strength=batch_strength)
    tables = []
    for smear in smears:
        features = region_features(smear.labels, smear.image, image_name=smear.metadata["image"],
                                   subject=smear.metadata["subject"])
        tables.append(features.merge(smear.cells[["label", "class"]], on="label"))
    table = pd.concat(tables, ignore_index=True)
    values = table[FEATURES].to_numpy(dtype=np.float64)
    return (values - values.mean(axis=0)) / values.std(axis=0), table


def test_hand_checked_neighborhood_mixing():
    mixing = subject_mixing(np.array([[0, 0, 1, 1], [0, 0, 0, 0]]), 2, np.array([0.5, 0.5]))
    assert mixing["ilisi"].tolist() == pytest.approx([1.0, 0.0])
    assert mixing["subject_entropy"].tolist() == pytest.approx([1.0, 0.0])
    assert mixing["kbet_rejected"].tolist() == [False, True]
    three = subject_mixing(np.array([[0, 1, 2, 2]]), 3, np.full(3, 1 / 3))
    # inverse Simpson of shares (1/4, 1/4, 1/2) is 1 / (3/8) = 8/3, scaled (8/3 - 1) / 2
    assert three["ilisi"].iloc[0] == pytest.approx((8 / 3 - 1) / 2)


def test_neighbors_exclude_the_cell_itself():
    x = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9]], dtype=np.float32)
    assert neighbor_indices(x, 1)[:, 0].tolist() == [1, 0, 3, 2]


def test_subjects_as_clusters_versus_subjects_mixed_in():
    x, y = make_blobs(900, n_features=12, centers=3, random_state=1)
    split = batch_metrics(x, [f"s{v}" for v in y], k=15)
    mixed = batch_metrics(x, [f"s{v}" for v in np.random.default_rng(0).integers(0, 3, 900)],
                          classes=[f"c{v}" for v in y], k=15)
    assert split.summary["subject_silhouette"] > 0.8 and split.summary["ilisi"] == 0.0
    assert split.summary["kbet_rejection"] == 1.0
    assert abs(mixed.summary["subject_silhouette"]) < 0.1 and mixed.summary["ilisi"] > 0.8
    assert mixed.summary["kbet_rejection"] < 0.2
    assert mixed.summary["class_purity"] == pytest.approx(1.0)
    assert mixed.summary["class_silhouette"] > 0.8
    assert list(mixed.per_subject.index) == ["s0", "s1", "s2"]
    assert mixed.per_subject["n_cells"].sum() == 900
    frame = mixed.to_frame()
    assert list(frame.columns) == ["scope", "group", "metric", "value"]
    assert set(frame["scope"]) == {"subject", "class", "overall"}
    ilisi = frame.query("scope == 'overall' and metric == 'ilisi'")["value"].item()
    assert ilisi == pytest.approx(mixed.summary["ilisi"])


def test_large_sets_are_scored_on_a_subsample():
    x, y = make_blobs(900, n_features=12, centers=3, random_state=1)
    report = batch_metrics(x, [f"s{v}" for v in y], k=15, max_cells=300)
    assert report.summary["n_cells"] == 900 and report.summary["n_scored"] == 300
    assert report.per_subject["n_cells"].sum() == 300 and report.summary["ilisi"] == 0.0


def test_unlabeled_cells_are_left_out_of_class_separation():
    x, y = make_blobs(300, n_features=6, centers=2, random_state=0)
    classes = np.where(np.arange(300) % 3 == 0, None, np.array([f"c{v}" for v in y]))
    report = batch_metrics(x, np.arange(300) % 2, classes, k=10)
    assert report.per_class["n_cells"].sum() == 200
    assert batch_metrics(x, np.arange(300) % 2, ["only"] * 300, k=10).per_class is None


def test_stronger_batch_effect_moves_the_metrics_the_right_way():
    weak_x, weak = _synthetic_features(0.0)
    strong_x, strong = _synthetic_features(1.5)
    weak_report = batch_metrics(weak_x, weak["subject"], weak["class"], k=15)
    strong_report = batch_metrics(strong_x, strong["subject"], strong["class"], k=15)
    assert strong_report.summary["subject_silhouette"] > weak_report.summary["subject_silhouette"]
    assert strong_report.summary["ilisi"] < weak_report.summary["ilisi"]
    assert strong_report.summary["kbet_rejection"] > weak_report.summary["kbet_rejection"]


@pytest.mark.slow  # embeds ~320 cells with the tiny ViT: ~20 s idle, more on a busy machine
def test_direction_holds_on_real_cell_embeddings(tiny_backbone):
    """Per-cell embeddings (patch_mean pooling) of the tiny random-init ViT/14 backbone."""
    from napari_reddino.embed.grid import cell_embeddings
    from napari_reddino.synthetic.smear import synthetic_dataset

    summaries = []
    for batch_strength in (0.0, 1.5):
        vectors, subjects = [], []
        for smear in synthetic_dataset(n_subjects=3, images_per_subject=1, shape=(448, 448),
                                       seed=1, batch_strength=batch_strength):
            embedded = cell_embeddings(smear.image, smear.labels, tiny_backbone,
                                       pooling="patch_mean", image_name=smear.metadata["image"])
            vectors.append(embedded.vectors)
            subjects += [smear.metadata["subject"]] * len(embedded.label)
        summaries.append(batch_metrics(np.concatenate(vectors), subjects, k=15).summary)
    weak, strong = summaries
    assert strong["subject_silhouette"] > weak["subject_silhouette"] + 0.1
    assert strong["ilisi"] < weak["ilisi"] - 0.2


def test_bad_input_gives_clear_messages():
    x = np.random.default_rng(0).standard_normal((20, 4))
    with pytest.raises(ValueError, match="only one subject"):
        batch_metrics(x, ["a"] * 20)
    with pytest.raises(ValueError, match="one row per cell"):
        batch_metrics(x, ["a", "b"] * 5)
    with pytest.raises(ValueError, match="k must be between 1 and 19"):
        batch_metrics(x, ["a", "b"] * 10, k=20)
    with pytest.raises(ValueError, match="classes has 3 entries for 20 cells"):
        batch_metrics(x, ["a", "b"] * 10, ["c"] * 3, k=5)
    with pytest.raises(ValueError, match="NaN"):
        batch_metrics(np.full((4, 2), np.nan), ["a", "b"] * 2, k=1)
