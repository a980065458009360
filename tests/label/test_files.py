"""Label tables on disk: export / import round trip, validation, merge report, autosave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.label import files
from napari_reddino.label.files import (
    LABEL_COLUMNS,
    Autosaver,
    export_labels,
    import_labels,
    merge_labels,
    read_labels,
)


@pytest.fixture
def features():
    """A combined cell table of two images, two cells labeled by hand and one propagated."""
    return pd.DataFrame({
        "label": [1, 2, 3, 1, 2],
        "image": ["a", "a", "a", "b", "b"],
        "subject": ["s1", "s1", "s1", "s2", "s2"],
        "centroid_y": [10.0, 20.0, 30.0, 5.0, 6.0],
        "centroid_x": [1.0, 2.0, 3.0, 4.0, 5.0],
        "area": [100.0, 120.0, 90.0, 80.0, 70.0],
        "umap_0": np.arange(5, dtype=np.float32),
        "umap_1": np.arange(5, dtype=np.float32) * 2,
        "class": ["discocyte", None, "sickle", "target", None],
        "class_source": ["manual", None, "propagated", "manual", None],
        "confidence": [1.0, np.nan, 0.75, 1.0, np.nan],
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_export_and_import_round_trip(features, tmp_path, suffix):
    path = export_labels(features, tmp_path / f"labels{suffix}")
    table = read_labels(path)
    assert list(table.columns) == [*LABEL_COLUMNS, "umap_0", "umap_1"]
    assert table["class"].tolist() == ["discocyte", None, "sickle", "target", None]
    assert table["confidence"].tolist()[2] == 0.75
    unlabeled = features.drop(columns=["class", "class_source", "confidence"])
    merged = import_labels(path, unlabeled)
    assert merged.n_matched == 3 and merged.missing.empty
    assert merged.table["class"].tolist() == ["discocyte", None, "sickle", "target", None]
    assert merged.table["class_source"].tolist() == [
        "manual", None, "propagated", "manual", None
    ]
    assert "class" not in unlabeled.columns  # the caller's table is untouched
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


def test_import_refuses_a_file_that_is_not_a_label_table(features, tmp_path):
    path = tmp_path / "other.csv"
    pd.DataFrame({"image": ["a"], "label": [1], "kind": ["x"]}).to_csv(path, index=False)
    before = features.copy()
    with pytest.raises(ValueError, match=r"expected columns \['image', 'subject'.*found "
                                         r"\['image', 'label', 'kind'\].*nothing was imported"):
        import_labels(path, features)
    pd.testing.assert_frame_equal(features, before)
    (tmp_path / "labels.txt").write_text("x")
    with pytest.raises(ValueError, match=r"\.csv or \.parquet"):
        read_labels(tmp_path / "labels.txt")


def test_merge_reports_cells_that_no_longer_exist(features):
    labels = files.label_table(features).iloc[[0, 3]].copy()
    labels.loc[labels.index[1], "image"] = "deleted_image"
    result = merge_labels(features.assign(**{"class": None, "class_source": None}), labels)
    assert result.n_matched == 1
    assert result.missing[["image", "label"]].values.tolist() == [["deleted_image", 1]]
    assert "1 labeled cell(s) no longer exist" in result.message
    assert result.table["class"].tolist() == ["discocyte", None, None, None, None]


def test_merge_refuses_unknown_classes_and_can_take_manual_only(features):
    labels = files.label_table(features)
    with pytest.raises(ValueError, match=r"not in the current class set: \['sickle'\]"):
        merge_labels(features, labels, class_names=["discocyte", "target"])
    manual = merge_labels(features.drop(columns=["class", "class_source", "confidence"]),
                          labels, manual_only=True)
    assert manual.table["class"].tolist() == ["discocyte", None, None, "target", None]


def test_autosaver_keeps_every_manual_label_across_a_restart(features, tmp_path):
    path = tmp_path / "autosave.csv"
    saver = Autosaver(path)
    saver.record("a", 2, "spherocyte")
    saver.record("b", 2, "sickle")
    saver.record("b", 2, None)  # cleared again
    restarted = Autosaver(path)
    assert len(restarted) == 1
    assert restarted.restore()[["image", "label", "class"]].values.tolist() == [
        ["a", 2, "spherocyte"]
    ]
    restarted.sync(features)
    restored = Autosaver(path).restore()
    assert sorted(map(tuple, restored[["image", "label", "class"]].values.tolist())) == [
        ("a", 1, "discocyte"), ("b", 1, "target")
    ]
    merged = merge_labels(features.drop(columns=["class", "class_source", "confidence"]),
                          restored)
    assert merged.table["class_source"].tolist() == ["manual", None, None, "manual", None]


def test_autosave_crash_mid_append_loses_only_the_line_being_written(tmp_path):
    path = tmp_path / "autosave.csv"
    saver = Autosaver(path)
    saver.record("a", 1, "target")
    saver.record("a", 2, "sickle")
    text = path.read_text()
    path.write_text(text[: text.rindex("sickle") + 3])  # power cut in the middle of a line
    assert Autosaver(path).restore()[["label", "class"]].values.tolist() == [[1, "target"]]


def test_autosaver_with_no_labels_and_bad_suffix(tmp_path):
    saver = Autosaver(tmp_path / "empty.csv")
    saver.record("a", 1, "x")
    saver.record("a", 1, "")
    assert len(Autosaver(tmp_path / "empty.csv")) == 0
    with pytest.raises(ValueError, match=r"must be a \.csv"):
        Autosaver(tmp_path / "labels.json")
