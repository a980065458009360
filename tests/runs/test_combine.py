"""Each combine step on known input: stacking, damaged folders, map and cluster notes, metrics,
carried labels and the files written."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table
from napari_reddino.runs import combine as cb
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    EMBEDDINGS_FILE,
    PipelineConfig,
    SmearResult,
    smear_dir,
    write_smear_outputs,
)


def _table(image: str, labels: list[int], rows: list[int], subject: str = "s1") -> pd.DataFrame:
    n = len(labels)
    return pd.DataFrame({
        "label": np.asarray(labels, dtype=np.int64), "image": image, "subject": subject,
        "centroid_y": 10.0 * np.arange(1, n + 1), "centroid_x": 5.0 * np.arange(1, n + 1),
        "area": 50.0, nm.EMBEDDING_ROW: rows,
    })


def _embeddings(image: str, labels: list[int], first: float) -> CellEmbeddings:
    vectors = first + np.arange(len(labels) * 2, dtype=np.float32).reshape(len(labels), 2)
    return CellEmbeddings(vectors, [image] * len(labels), labels, "fake", "cls_crop")


def test_stacking_two_smears_offsets_the_second_smears_embedding_rows():
    a = (_table("a.png", [4, 9], rows=[1, 0]), _embeddings("a.png", [9, 4], first=0.0))
    b = (_table("b.png", [2, 3, 5], rows=[0, 1, 2]), _embeddings("b.png", [2, 3, 5], first=100.0))
    table, embeddings = cb.stack_smears([a, b])
    assert table[nm.EMBEDDING_ROW].tolist() == [1, 0, 2, 3, 4]  # b's rows shifted by a's 2
    assert table.index.tolist() == [0, 1, 2, 3, 4]
    assert embeddings.vectors.shape == (5, 2)
    rows = table[nm.EMBEDDING_ROW].to_numpy()
    # every table row points at the vector of its own (image, label)
    np.testing.assert_array_equal(embeddings.image[rows], table["image"].to_numpy())
    np.testing.assert_array_equal(embeddings.label[rows], table["label"].to_numpy())
    assert a[0][nm.EMBEDDING_ROW].tolist() == [1, 0]  # the inputs are left as they were


def test_stacking_refuses_two_smears_with_the_same_keys():
    a = (_table("a.png", [1], rows=[0]), _embeddings("a.png", [1], first=0.0))
    with pytest.raises(ValueError, match="duplicate"):
        cb.stack_smears([a, a])


CONFIG = PipelineConfig(backbone="fake")


def _finished(out, name: str, labels: list[int], seed: int = 0) -> None:
    """A finished smear folder with seeded random 8-d vectors (no backbone needed)."""
    raster = np.zeros((28, 28), np.int32)
    raster[:len(labels)] = np.asarray(labels)[:, None]
    vectors = np.random.default_rng(seed).standard_normal((len(labels), 8)).astype(np.float32)
    embeddings = CellEmbeddings(vectors, [name] * len(labels), labels, "fake", "cls_crop")
    table = _table(name, labels, rows=list(range(len(labels))))
    result = SmearResult(name, "s1", raster, table, embeddings, np.zeros((2, 2, 8), np.float32), 14)
    write_smear_outputs(result, out, CONFIG)


def test_usable_smears_leave_out_and_invalidate_a_damaged_folder(tmp_path):
    with pytest.raises(ValueError, match="no finished smears to combine"):
        cb.usable_smears(tmp_path)
    _finished(tmp_path, "a.png", [1, 2])
    _finished(tmp_path, "b.png", [3])
    (smear_dir(tmp_path, "b.png") / EMBEDDINGS_FILE).write_bytes(b"not a zip")
    folders, warnings = cb.usable_smears(tmp_path)
    assert folders == [smear_dir(tmp_path, "a.png")]
    assert len(warnings) == 1 and warnings[0].startswith("smear folder b.png left out: damaged")
    assert not (smear_dir(tmp_path, "b.png") / DONE_MARKER).exists()  # the next run redoes it
    assert cb.finished_smears(tmp_path, ["a.png", "b.png"]) == [smear_dir(tmp_path, "a.png")]


def test_map_method_and_cluster_note_say_what_changed():
    assert cb.map_method(16, "umap") == ("umap", "")
    method, note = cb.map_method(15, "umap")
    assert method == "pca" and note.startswith("only 15 cells: the map is a PCA instead of umap")
    assert cb.map_method(10, "pca") == ("pca", "")
    assert cb.cluster_note(8, 8, 100) == ""
    assert cb.cluster_note(8, 2, 10).startswith("2 clusters instead of the 8 asked for: 10 cells")


def test_batch_report_needs_two_subjects():
    vectors = np.random.default_rng(0).standard_normal((40, 4)).astype(np.float32)
    one = pd.DataFrame({"subject": ["s1"] * 40})
    metrics, summary = cb.batch_report(vectors, one)
    assert metrics.empty and summary == {"batch_metrics": "needs at least 2 subjects"}
    two = pd.DataFrame({"subject": ["s1", "s2"] * 20})
    metrics, summary = cb.batch_report(vectors, two)
    assert sorted(metrics["subject"]) == ["s1", "s2"] and summary


def test_previous_labels_only_when_the_old_table_has_classes(tmp_path):
    path = tmp_path / nm.CELLS_TABLE_FILE
    assert cb.previous_labels(path) is None  # no table yet
    table = _table("a.png", [1, 2], rows=[0, 1])
    save_table(table, path)
    assert cb.previous_labels(path) is None  # a table without classes
    save_table(table.assign(**{nm.CLASS: ["target", None]}), path)
    previous = cb.previous_labels(path)
    assert previous[nm.CLASS].tolist()[0] == "target"
    assert nm.CLASS_SOURCE in previous and previous[nm.CONFIDENCE].isna().all()
    path.write_bytes(b"damaged")
    with pytest.raises(ValueError, match="cannot be read"):
        cb.previous_labels(path)


def test_carried_labels_follow_their_cells_and_the_rest_is_written_out(tmp_path):
    new = _table("a.png", [1, 2], rows=[0, 1])
    previous = pd.concat([_table("a.png", [1], rows=[0]), _table("gone.png", [7], rows=[0])])
    previous = previous.assign(**{nm.CLASS: ["target", "sickle"], nm.CLASS_SOURCE: "manual",
                                  nm.CONFIDENCE: 1.0}).reset_index(drop=True)
    table, note = cb.carry_labels(new, previous, tmp_path)
    assert table[nm.CLASS].tolist() == ["target", None]
    assert note.startswith("1 labeled cell(s) of the previous cells.parquet are not in the new")
    left = pd.read_csv(tmp_path / cb.NOT_CARRIED_FILE)
    assert left["image"].tolist() == ["gone.png"] and left[nm.CLASS].tolist() == ["sickle"]
    table, note = cb.carry_labels(new, previous.iloc[:1], tmp_path / "other")
    assert note == "" and not (tmp_path / "other").exists()


def test_write_combined_writes_the_four_files(tmp_path):
    table = _table("a.png", [1, 2], rows=[0, 1])
    embeddings = _embeddings("a.png", [1, 2], first=0.0)
    summary = {"n_cells": np.int64(2), "silhouette": np.float32(0.5), "warnings": []}
    cb.write_combined(tmp_path, cb.Combined(table, embeddings, pd.DataFrame({"x": [1]}), summary))
    pd.testing.assert_frame_equal(load_table(tmp_path / nm.CELLS_TABLE_FILE), table)
    loaded = CellEmbeddings.load(tmp_path / nm.EMBEDDINGS_FILE)
    np.testing.assert_array_equal(loaded.vectors, embeddings.vectors)
    assert pd.read_csv(tmp_path / cb.METRICS_TABLE)["x"].tolist() == [1]
    assert json.loads((tmp_path / nm.SUMMARY_FILE).read_text()) == {
        "n_cells": 2, "silhouette": 0.5, "warnings": []}


def test_combine_runs_the_steps_in_order_and_keeps_the_summary_keys(tmp_path):
    for i, name in enumerate(["a.png", "b.png", "c.png"]):
        _finished(tmp_path, name, list(range(1 + 10 * i, 7 + 10 * i)), seed=i)
    combined = cb.combine(tmp_path, n_clusters=8)
    assert len(combined.table) == 18
    assert list(combined.summary) == ["batch_metrics", "n_cells", "n_counted", "n_images",
                                      "projection", "n_clusters", "feature_space", "n_neighbors",
                                      "metric", "random_state", "cluster_method",
                                      "weights_identity", "n_subjects", "warnings"]
    assert combined.summary["projection"] == "umap" and combined.summary["n_clusters"] == 3
    assert combined.warnings == [cb.cluster_note(8, 3, 18)]
    written = json.loads((tmp_path / nm.SUMMARY_FILE).read_text())
    assert written["warnings"] == combined.warnings
    rows = combined.table[nm.EMBEDDING_ROW].to_numpy()
    np.testing.assert_array_equal(combined.embeddings.label[rows], combined.table["label"])
