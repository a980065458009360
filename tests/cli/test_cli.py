"""The `napari-reddino` command, in-process and as a real subprocess, on small synthetic smears."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli import demo
from napari_reddino.cli.demo import DOCKS, has_display, populate_viewer, write_demo_smears
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table
from napari_reddino.segment.dispatch import segment

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir) -> str:
    return f"local-dir:{tiny_backbone_dir}"


@pytest.fixture(scope="module")
def smears(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli_smears")
    files, mapping = write_demo_smears(folder, n_subjects=2, images_per_subject=2,
                                       shape=(256, 256), seed=2)
    return folder, files, mapping


@pytest.fixture(scope="module")
def runs(smears, backbone, tmp_path_factory):
    """The same smears through `run` (a real subprocess: dask LocalCluster of 2 worker
    processes, UMAP, report) and through `embed` + `project` in this process."""
    folder, _files, mapping = smears
    root = tmp_path_factory.mktemp("cli_runs")
    sub = subprocess.run(
        [sys.executable, "-m", "napari_reddino", "-q", "run", str(folder / "*.png"),
         "--out", str(root / "run"), "--subjects", str(mapping), "--backbone", backbone,
         "--pooling", "patch_mean", "--workers", "2", "--clusters", "3"],
        capture_output=True, text=True, timeout=400,
    )
    assert sub.returncode == 0, sub.stderr
    assert "4 done, 0 already done (skipped), 0 failed" in sub.stdout
    assert f"report: {(root / 'run' / 'report' / 'index.html').resolve()}" in sub.stdout
    assert main(["-q", "embed", str(folder), "--out", str(root / "embed"), "--subjects",
                 str(mapping), "--backbone", backbone, "--pooling", "patch_mean"]) == 0
    assert main(["-q", "project", str(root / "embed"), "--clusters", "3",
                 "--projection", "pca"]) == 0
    return root / "run", root / "embed"


@pytest.mark.slow  # shares the `runs` fixture: a dask run + a subprocess
def test_run_outputs_and_report(runs, smears):
    run_dir, _ = runs
    _folder, files, mapping = smears
    table = load_table(run_dir / "cells.parquet")
    truth = pd.read_csv(mapping).set_index("image")["subject"]
    assert set(table["image"]) == {f.name for f in files}
    assert (table["subject"].to_numpy() == truth[table["image"]].to_numpy()).all()
    assert {"umap_0", "umap_1", "cluster", "embedding_row"} <= set(table.columns)
    assert table.loc[table["counted"], "cluster"].nunique() == 3  # the rest: cluster -1
    assert (table.loc[~table["counted"], "cluster"] == -1).all()
    assert (run_dir / "report" / "index.html").is_file()
    assert (run_dir / "report" / "images" / "umap_cluster.png").is_file()
    assert pd.read_csv(run_dir / "runs.csv")["status"].eq("done").all()


@pytest.mark.slow  # shares the `runs` fixture: a dask run + a subprocess
def test_dask_run_equals_in_process_embed(runs):
    run_dir, embed_dir = runs
    keys = ["image", "label"]
    a = load_table(run_dir / "cells.parquet").sort_values(keys).reset_index(drop=True)
    b = load_table(embed_dir / "cells.parquet").sort_values(keys).reset_index(drop=True)
    columns = [*keys, "area", "subject"]
    pd.testing.assert_frame_equal(a[columns], b[columns], check_dtype=False,
                                  check_categorical=False)
    va = CellEmbeddings.load(run_dir / "embeddings.npz").vectors[a["embedding_row"]]
    vb = CellEmbeddings.load(embed_dir / "embeddings.npz").vectors[b["embedding_row"]]
    np.testing.assert_allclose(va, vb, atol=1e-4)


@pytest.mark.slow  # shares the `runs` fixture: a dask run + a subprocess
def test_propagate_from_a_labeled_reference(runs, tmp_path, capsys):
    run_dir, embed_dir = runs
    reference = load_table(run_dir / "cells.parquet")
    reference["class"] = np.where(reference["area"] > reference["area"].median(), "big", "small")
    reference.loc[reference.index[::7], "class"] = None  # some reference cells unlabeled
    ref_dir = tmp_path / "ref"
    ref_dir.mkdir()
    save_table(reference, ref_dir / "cells.parquet")
    (ref_dir / "embeddings.npz").write_bytes((run_dir / "embeddings.npz").read_bytes())
    assert main(["-q", "propagate", str(embed_dir), "--reference", str(ref_dir), "--k", "1",
                 "--classifier", "knn"]) == 0
    assert "mean confidence" in capsys.readouterr().out
    out = load_table(embed_dir / "cells.parquet")
    counted = out["counted"].to_numpy()  # only counted cells vote and get classes
    assert set(out.loc[counted, "class_source"]) == {"propagated"}
    assert out.loc[~counted, "class_source"].isna().all()
    out = out[counted]
    # the same cells were embedded identically: each cell's nearest labeled cell is itself
    merged = out.merge(reference, on=["image", "label"], suffixes=("", "_ref"))
    labeled = merged["class_ref"].notna()
    assert len(merged) == len(out) and labeled.sum() > 0
    assert (merged.loc[labeled, "class"] == merged.loc[labeled, "class_ref"]).all()
    assert (merged["confidence"] > 0).all()


def test_segment_command_matches_core(smears, tmp_path):
    _folder, files, _mapping = smears
    import tifffile

    from napari_reddino.runs.pipeline import read_image

    assert main(["-q", "segment", str(files[0]), "--out", str(tmp_path)]) == 0
    labels = tifffile.imread(tmp_path / f"{files[0].stem}_labels.tif")
    expected = segment(read_image(files[0]), image_name=files[0].name)
    np.testing.assert_array_equal(labels, expected.labels)
    table = load_table(tmp_path / f"{files[0].stem}_cells.csv")
    assert sorted(table["label"]) == sorted(set(np.unique(labels)) - {0})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "{tmp}/nothing*.png", "--out", "{tmp}/o"], "no images"),
        (["run", "{tmp}/missing_dir", "--out", "{tmp}/o"], "no such file"),
        (["embed", "{smear}", "--out", "{tmp}/o", "--backbone", "local-dir:{tmp}/no_model"],
         "no_model"),
        (["embed", "{smear}", "--out", "{tmp}/o", "--subjects", "{tmp}/bad.csv"],
         "needs columns 'image' and 'subject'"),
        (["project", "{tmp}/empty"], "no finished smears"),
    ],
)
def test_bad_input_gives_a_clear_message(argv, message, smears, tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("file,who\na,b\n")
    (tmp_path / "empty").mkdir()
    argv = [a.format(tmp=tmp_path, smear=smears[1][0]) for a in argv]
    assert main(["-q", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_help_explains_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for command in ("segment", "embed", "project", "propagate", "report", "run", "demo"):
        assert command in text
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    for option in ("--scheduler", "--workers", "--subjects", "--backbone", "--retries"):
        assert option in text


def test_has_display_follows_the_environment(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert not has_display()
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert has_display()


def test_headless_demo_writes_a_report(backbone, tmp_path, capsys, monkeypatch):
    small = functools.partial(demo.write_demo_smears, images_per_subject=1, shape=(256, 256))
    monkeypatch.setattr(demo, "write_demo_smears", small)  # 3 small smears: a fast test
    out = tmp_path / "demo"
    assert main(["-q", "demo", "--headless", "--out", str(out), "--backbone", backbone,
                 "--workers", "1"]) == 0
    assert str((out / "report" / "index.html").resolve()) in capsys.readouterr().out
    table = load_table(out / "cells.parquet")
    assert table["subject"].nunique() == 3 and table["image"].nunique() == 3
    assert len(list((out / "input").glob("*.png"))) == 3


@pytest.mark.widget
def test_gui_demo_shows_segmented_and_embedded_smear(make_napari_viewer, backbone):
    viewer = make_napari_viewer()
    added = populate_viewer(viewer, backbone=backbone, pooling="patch_mean")
    labels = added["labels"]
    assert labels.name.endswith(" labels") and labels.data.max() > 0
    assert set(labels.features["label"]) == set(np.unique(labels.data)) - {0}
    vectors = labels.metadata["reddino_embeddings"].vectors
    assert len(vectors) == len(labels.features)
    assert sorted(labels.features["embedding_row"]) == list(range(len(vectors)))
    assert added["overlay"].rgb and added["overlay"].name.endswith("RedDino PCA")
    assert set(added["docks"]) == set(DOCKS)
    assert all(dock.isVisible() or not viewer.window._qt_window.isVisible()
               for dock, _widget in added["docks"].values())
