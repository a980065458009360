"""Synthetic smears: determinism, class coverage, truth consistency, morphology, batch effects."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from napari_reddino.io.cell_table import region_features
from napari_reddino.synthetic.smear import (
    DISTRACTOR_CLASSES,
    RBC_CLASSES,
    SubjectStyle,
    make_subject_styles,
    synthetic_dataset,
    synthetic_smear,
)


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear((768, 768), seed=11, parasites=True)


@pytest.fixture(scope="module")
def measured(smear):
    """Truth table joined with region features measured on the truth labels."""
    features = region_features(smear.labels, smear.image, image_name="x", subject="y")
    return smear.cells.merge(features.drop(columns=["image", "subject", "area"]), on="label")


def test_same_seed_same_smear_other_seed_other_smear(smear):
    again = synthetic_smear((768, 768), seed=11, parasites=True)
    np.testing.assert_array_equal(again.image, smear.image)
    np.testing.assert_array_equal(again.labels, smear.labels)
    pd.testing.assert_frame_equal(again.cells, smear.cells)
    other = synthetic_smear((768, 768), seed=12, parasites=True)
    assert not np.array_equal(other.labels, smear.labels)


def test_truth_table_matches_label_image(smear):
    image, labels, cells = smear.image, smear.labels, smear.cells
    assert image.shape == (768, 768, 3) and image.dtype == np.uint8
    assert labels.shape == (768, 768) and labels.dtype == np.int32
    ids = np.unique(labels)
    assert cells["label"].tolist() == ids[ids > 0].tolist() == list(range(1, len(cells) + 1))
    np.testing.assert_array_equal(cells["area"], np.bincount(labels.ravel())[1:])
    for row in cells.sample(20, random_state=0).itertuples():
        ys, xs = np.nonzero(labels == row.label)
        assert (row.centroid_y, row.centroid_x) == pytest.approx((ys.mean(), xs.mean()))
    assert set(cells["class"]) <= set(RBC_CLASSES) | set(DISTRACTOR_CLASSES)
    assert (cells["subject"] == smear.metadata["subject"]).all()
    assert (cells["image"] == smear.metadata["image"]).all()
    assert smear.metadata["seed"] == 11 and "magnification" in smear.metadata


def test_every_class_appears_and_weights_are_honoured():
    pooled = pd.concat([s.cells for s in synthetic_dataset(3, 1, (768, 768), seed=4)])
    assert set(RBC_CLASSES) | set(DISTRACTOR_CLASSES) <= set(pooled["class"])
    only_sickle = synthetic_smear((384, 384), seed=1, class_weights={"sickle": 1.0}).cells
    assert set(only_sickle["class"]) - set(DISTRACTOR_CLASSES) == {"sickle"}
    with pytest.raises(ValueError, match="unknown classes"):
        synthetic_smear((64, 64), class_weights={"blob": 1.0})
    with pytest.raises(ValueError, match="shape"):
        synthetic_smear((4, 4))


def test_parasites_only_in_red_cells_and_visible(smear, measured):
    infected = smear.cells[smear.cells["parasitized"]]
    assert len(infected) >= 3 and set(infected["class"]) <= set(RBC_CLASSES)
    assert not synthetic_smear((384, 384), seed=1).cells["parasitized"].any()
    # the purple ring darkens the red channel, which RBC stain alone barely absorbs
    big = smear.cells["area"] > 300
    darkest_red = {row.label: smear.image[..., 0][smear.labels == row.label].min()
                   for row in smear.cells[big].itertuples()}
    infected_min = np.median([darkest_red[k] for k in infected["label"] if k in darkest_red])
    clean_min = np.median([v for k, v in darkest_red.items() if k not in set(infected["label"])])
    assert infected_min < clean_min - 20


def test_it_looks_like_a_wright_stained_smear(smear, measured):
    image, labels = smear.image.astype(float), smear.labels
    background = image[labels == 0].mean(0)
    assert background.min() > 200  # pale plasma
    rbc = measured[measured["class"].isin(RBC_CLASSES)]
    assert (rbc[["mean_r", "mean_g", "mean_b"]].mean() < background - 30).all()
    assert rbc["mean_r"].mean() > rbc["mean_g"].mean() + 20  # pink-red, not blue
    wbc = measured[measured["class"] == "wbc"]
    if len(wbc):  # nuclei are purple: blue beats green
        assert (wbc["mean_b"] > wbc["mean_g"]).all()


def test_discocytes_have_central_pallor(smear):
    disco = smear.cells[(smear.cells["class"] == "discocyte") & (smear.cells["area"] > 900)]
    gray = smear.image.mean(2)
    center = gray[disco["centroid_y"].round().astype(int), disco["centroid_x"].round().astype(int)]
    cell_mean = [gray[smear.labels == k].mean() for k in disco["label"]]
    assert np.mean(center > np.asarray(cell_mean)) > 0.8


def test_morphologies_differ_as_in_the_atlas(measured):
    by_class = measured.groupby("class")
    area, ecc = by_class["area"].median(), by_class["eccentricity"].median()
    solidity = by_class["solidity"].median()
    assert area["spherocyte"] < 0.7 * area["discocyte"]
    assert area["schistocyte"] < 0.6 * area["discocyte"]
    assert area["platelet"] < 0.1 * area["discocyte"] and area["wbc"] > 2 * area["discocyte"]
    for elongated in ("elliptocyte", "sickle", "dacrocyte"):
        assert ecc[elongated] > ecc["discocyte"] + 0.3
    assert solidity["sickle"] < solidity["discocyte"] - 0.1  # crescents are concave
    assert solidity["echinocyte"] < solidity["discocyte"]  # spiky edge


def test_batch_strength_scales_subject_differences():
    assert make_subject_styles(3, seed=0, batch_strength=0)[0].rbc_radius == pytest.approx(
        SubjectStyle().rbc_radius)
    same = make_subject_styles(3, seed=0, batch_strength=0)
    assert {(s.stain_hue, s.blur, s.magnification) for s in same} == {
        (same[0].stain_hue, same[0].blur, same[0].magnification)}

    def spread(strength):
        smears = synthetic_dataset(3, 1, (256, 256), seed=5, batch_strength=strength)
        colors = np.array([s.image[s.labels == 0].mean(0) for s in smears])
        sizes = np.array([s.cells["area"].median() for s in smears])
        return np.ptp(colors, axis=0).max(), sizes.max() / sizes.min()

    color0, size0 = spread(0.0)
    color1, size1 = spread(1.0)
    assert color1 > color0 + 5 and size1 > size0 * 1.2
    names = [s.metadata["subject"] for s in synthetic_dataset(2, 2, (64, 64), seed=0)]
    assert names == ["subject_0", "subject_0", "subject_1", "subject_1"]
    with pytest.raises(ValueError):
        make_subject_styles(0)


def test_large_smear_generates_in_seconds():
    start = time.perf_counter()
    big = synthetic_smear((2048, 2048), seed=3)
    elapsed = time.perf_counter() - start
    assert len(big.cells) > 800
    assert elapsed < 15, f"2048^2 smear took {elapsed:.1f} s"


def test_sample_providers_return_layer_data_with_truth():
    from napari_reddino.plugin.samples import synthetic_smear_sample, synthetic_subjects_sample

    layers = synthetic_smear_sample()
    (image, image_kw, image_type), (labels, labels_kw, labels_type) = layers
    assert (image_type, labels_type) == ("image", "labels")
    assert image.shape == (1024, 1024, 3) and image_kw["rgb"]
    assert labels_kw["name"] == f"{image_kw['name']} truth"
    features = labels_kw["features"]
    ids = np.unique(labels)
    assert features["label"].tolist() == ids[ids > 0].tolist()
    assert {"true_class", "true_parasitized"} <= set(features.columns)
    subjects = synthetic_subjects_sample()
    images = [layer for layer in subjects if layer[2] == "image"]
    assert [kw["metadata"]["subject"] for _, kw, _ in images] == [
        "subject_0", "subject_1", "subject_2"]
    assert sum(layer[2] == "labels" for layer in subjects) == 3


@pytest.mark.widget
def test_samples_open_in_napari(make_napari_viewer):
    # triton (pulled in by torch._dynamo) segfaults when first imported after napari made a GL
    # context (two LLVMs in one process); load it first so later torch tests in this session live
    pytest.importorskip("triton")
    viewer = make_napari_viewer()
    viewer.open_sample("napari-reddino", "synthetic_subjects")
    names = [layer.name for layer in viewer.layers]
    assert len(names) == 6 and sum(name.endswith(" truth") for name in names) == 3
    truth = viewer.layers[names[1]]
    assert len(truth.features) == len(np.unique(truth.data)) - 1
    assert viewer.layers[names[0]].metadata["subject"] == "subject_0"
