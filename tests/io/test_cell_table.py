"""The cell table: region features against hand-made truth, io round trips, schema errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.io.cell_table import (
    REGION_COLUMNS,
    CellEmbeddings,
    concat_tables,
    load_table,
    region_features,
    save_table,
)


@pytest.fixture
def two_squares():
    """Labels 3 and 7 as known rectangles on a known color image."""
    labels = np.zeros((40, 50), np.int32)
    labels[2:12, 4:14] = 3  # 10 x 10, center (6.5, 8.5)
    labels[20:30, 30:50] = 7  # 10 x 20 touching the right edge, center (24.5, 39.5)
    image = np.full((40, 50, 3), 240, np.uint8)
    image[labels == 3] = (200, 100, 150)
    image[labels == 7] = (10, 20, 30)
    return labels, image


def test_region_features_measure_known_shapes(two_squares):
    labels, image = two_squares
    table = region_features(labels, image, image_name="smear.png", subject="patient 1")
    assert list(table.columns) == list(REGION_COLUMNS)
    assert table["label"].tolist() == [3, 7]
    assert table["area"].tolist() == [100.0, 200.0]
    np.testing.assert_allclose(table[["centroid_y", "centroid_x"]], [[6.5, 8.5], [24.5, 39.5]])
    np.testing.assert_allclose(table[["mean_r", "mean_g", "mean_b"]],
                               [[200, 100, 150], [10, 20, 30]])
    assert (table["image"] == "smear.png").all() and (table["subject"] == "patient 1").all()
    assert table.loc[0, "solidity"] == pytest.approx(1.0)
    assert table.loc[1, "eccentricity"] > table.loc[0, "eccentricity"]  # 1:2 vs square


def test_region_features_of_nothing_has_the_schema():
    table = region_features(np.zeros((10, 10), np.int32), np.zeros((10, 10, 3), np.uint8),
                            image_name="a", subject="s")
    assert len(table) == 0 and list(table.columns) == list(REGION_COLUMNS)


def test_region_features_rejects_mismatched_input(two_squares):
    labels, image = two_squares
    with pytest.raises(ValueError, match="matching labels"):
        region_features(labels, image[:10], image_name="a", subject="s")
    with pytest.raises(ValueError, match="integers"):
        region_features(labels.astype(float), image, image_name="a", subject="s")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trip(two_squares, tmp_path, suffix):
    table = region_features(*two_squares, image_name="007", subject="0042")
    path = save_table(table, tmp_path / f"cells{suffix}")
    loaded = load_table(path)
    pd.testing.assert_frame_equal(loaded, table, check_dtype=False)
    assert loaded["image"].tolist() == ["007", "007"]  # names that look like numbers stay text


def test_load_table_names_missing_columns(tmp_path):
    path = tmp_path / "cells.csv"
    pd.DataFrame({"label": [1], "image": ["a"], "area": [3.0]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"missing column\(s\) \['subject', 'centroid_y'"):
        load_table(path)
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        load_table(tmp_path / "cells.xlsx")
    with pytest.raises(FileNotFoundError):
        load_table(tmp_path / "absent.parquet")


def test_concat_tables_keys_stay_unique(two_squares):
    a = region_features(*two_squares, image_name="a", subject="s1")
    b = region_features(*two_squares, image_name="b", subject="s2")
    combined = concat_tables([a, b])
    assert len(combined) == 4
    assert combined.groupby("image")["label"].apply(list).to_dict() == {"a": [3, 7], "b": [3, 7]}
    with pytest.raises(ValueError, match="duplicate"):
        concat_tables([a, a])
    assert list(concat_tables([]).columns) == list(REGION_COLUMNS)


def test_cell_embeddings_round_trip_and_lookup(tmp_path):
    rng = np.random.default_rng(0)
    first = CellEmbeddings(rng.normal(size=(3, 4)), ["a"] * 3, [5, 1, 9], "reddino", "cls_crop")
    second = CellEmbeddings(rng.normal(size=(2, 4)), ["b"] * 2, [1, 2], "reddino", "cls_crop")
    both = CellEmbeddings.concat([first, second])
    assert len(both) == 5 and both.dim == 4 and both.vectors.dtype == np.float32
    loaded = CellEmbeddings.load(both.save(tmp_path / "emb.npz"))
    np.testing.assert_array_equal(loaded.vectors, both.vectors)
    assert loaded.image.tolist() == ["a", "a", "a", "b", "b"]
    assert (loaded.backbone, loaded.pooling) == ("reddino", "cls_crop")
    assert loaded.rows_for("a", [9, 5, 4]).tolist() == [2, 0, -1]
    assert loaded.rows_for("b", [1]).tolist() == [3]
    pooled_keys = (["b", "a", "b", "c"], [2, 1, 1, 1])  # one image name per row
    assert loaded.rows_for(*pooled_keys).tolist() == [4, 1, 3, -1]
    with pytest.raises(KeyError, match=r"\('b', 7\)"):
        loaded.rows_for("b", [7], strict=True)


def test_cell_embeddings_reject_inconsistent_input(tmp_path):
    with pytest.raises(ValueError, match="3 vectors but 2"):
        CellEmbeddings(np.zeros((3, 2)), ["a", "a"], [1, 2, 3], "m", "p")
    a = CellEmbeddings(np.zeros((1, 2)), ["a"], [1], "m1", "p")
    b = CellEmbeddings(np.zeros((1, 2)), ["b"], [1], "m2", "p")
    with pytest.raises(ValueError, match="cannot mix"):
        CellEmbeddings.concat([a, b])
    with pytest.raises(ValueError, match=r"\.npz"):
        a.save(tmp_path / "emb.npy")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))
    with pytest.raises(ValueError, match="missing"):
        CellEmbeddings.load(tmp_path / "other.npz")
