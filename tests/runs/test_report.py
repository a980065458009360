"""The HTML report: counts that match the cell table, images that exist and show something."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table, save_table
from napari_reddino.runs.combine import combine
from napari_reddino.runs.pipeline import PipelineConfig, read_subject_map, run_smear_file
from napari_reddino.runs.report import write_report


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, tiny_backbone_dir) -> Path:
    """Three embedded smears of two subjects, pooled (no dask: the report only reads files)."""
    root = tmp_path_factory.mktemp("report")
    files, mapping = write_demo_smears(root / "in", n_subjects=2, images_per_subject=2,
                                       shape=(320, 320), seed=5)
    files = files[:3]
    subjects = read_subject_map(mapping, files)
    config = PipelineConfig(backbone=f"local-dir:{tiny_backbone_dir}", pooling="patch_mean")
    for path in files:
        status = run_smear_file(path, root / "run", config, subject=subjects[path.name])
        assert status.status == "done"
    combine(root / "run", n_clusters=3, projection="pca")
    return root / "run"


def _html_tables(index: Path) -> list[pd.DataFrame]:
    return pd.read_html(io.StringIO(index.read_text()), flavor="lxml")


def _check_images(index: Path, expected: int) -> None:
    sources = re.findall(r'<img src="([^"]+)"', index.read_text())
    assert len(sources) == expected
    for src in sources:
        assert not Path(src).is_absolute()  # the folder can be moved or zipped
        pixels = iio.imread(index.parent / src)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels[..., :3].std() > 5


def test_report_counts_per_cluster(run_dir, tmp_path):
    index = write_report(run_dir, tmp_path / "rep")
    table = load_table(run_dir / "cells.parquet")
    table = table[table["counted"]]  # the report counts the counted cells only
    truth = pd.crosstab(table["subject"], table["cluster"])
    by_subject = pd.read_csv(tmp_path / "rep" / "counts_by_subject.csv").set_index("subject")
    for cluster_id in truth.columns:
        assert by_subject[f"cluster {cluster_id}"].to_dict() == truth[cluster_id].to_dict()
    assert by_subject["total"].to_dict() == table["subject"].value_counts().to_dict()
    by_image = pd.read_csv(tmp_path / "rep" / "counts_by_image.csv").set_index("image")
    assert by_image["total"].to_dict() == table["image"].value_counts().to_dict()
    # the page shows the same numbers as the CSV
    shown = _html_tables(index)[0].set_index("subject")
    pd.testing.assert_frame_equal(shown, by_subject, check_dtype=False)
    metrics = pd.read_csv(tmp_path / "rep" / "batch_metrics.csv")
    assert set(metrics["subject"]) == set(table["subject"])
    # the page names the space the map and clusters were made in (summary.json's)
    space = json.loads((run_dir / "summary.json").read_text())["feature_space"]
    assert f"k-means cluster in the {space} space" in index.read_text()
    assert f"of the {space} space)" in index.read_text()
    # 2 UMAP panels (by cluster, by subject) + one PCA overlay per image
    _check_images(index, 2 + table["image"].nunique())


def test_report_counts_per_class_when_labeled(run_dir, tmp_path):
    labeled = tmp_path / "labeled"
    labeled.mkdir()
    for name in ("embeddings.npz", "batch_metrics.csv", "summary.json"):
        (labeled / name).write_bytes((run_dir / name).read_bytes())
    (labeled / "smears").symlink_to(run_dir / "smears")
    table = load_table(run_dir / "cells.parquet")
    table["class"] = np.where(table["area"] > table["area"].median(), "large", "small")
    save_table(table, labeled / "cells.parquet")
    index = write_report(labeled, max_overlays=1)
    shown = _html_tables(index)[0].set_index("subject")
    table = table[table["counted"]]  # the report counts the counted cells only
    truth = pd.crosstab(table["subject"], table["class"])
    assert shown["large"].to_dict() == truth["large"].to_dict()
    assert shown["small"].to_dict() == truth["small"].to_dict()
    assert "class (manual or propagated)" in index.read_text()
    # morphology per class: medians of the table's own columns, in the CSV and on the page
    morph = pd.read_csv(labeled / "report" / "morphology_by_class.csv").set_index("class")
    truth_diameter = table.groupby("class")["morph_equivalent_diameter"].median()
    np.testing.assert_allclose(morph.loc[truth_diameter.index, "equivalent_diameter"],
                               truth_diameter, rtol=1e-9)
    assert morph["cells"].to_dict() == table["class"].value_counts().to_dict()
    assert "Morphology per class" in index.read_text()
    _check_images(index, 2 + 1)
    assert f"First 1 of {table['image'].nunique()} images shown" in index.read_text()


def test_report_command_and_missing_run(run_dir, tmp_path, capsys):
    assert main(["-q", "report", str(run_dir), "--out", str(tmp_path / "r")]) == 0
    assert str((tmp_path / "r" / "index.html").resolve()) in capsys.readouterr().out
    assert main(["-q", "report", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert "no cells.parquet" in err and "Traceback" not in err


def test_report_says_what_marks_each_cluster(run_dir, tmp_path):
    """#25: each cluster against the rest, by the same rank test the explorer uses."""
    from napari_reddino.explore.markers import rank_features

    index = write_report(run_dir, tmp_path / "rep")
    markers = pd.read_csv(tmp_path / "rep" / "cluster_markers.csv")
    table = load_table(run_dir / "cells.parquet")
    table = table[table["cluster"] >= 0]
    assert sorted(markers["group"]) == sorted(table["cluster"].unique())
    first = markers.iloc[0]
    ranked = rank_features(table, (table["cluster"] == first["group"]).to_numpy())
    top = ranked.iloc[0]
    assert first["top_features"].startswith(f"{top['feature']} {top['effect']:+.2f}")
    assert "What marks each cluster" in index.read_text()
    assert first["description"] in index.read_text()
