"""The per-smear pipeline: one synthetic smear in, a consistent table + vectors + grid out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    PipelineConfig,
    PipelineInputError,
    cached_backbone,
    find_images,
    is_done,
    load_smear_outputs,
    process_smear,
    read_image,
    read_subject_map,
    run_smear_file,
    smear_dir,
    write_smear_outputs,
)
from napari_reddino.segment.counted import add_counted
from napari_reddino.synthetic.smear import synthetic_smear


@pytest.fixture(scope="module")
def backbone_name(tiny_backbone_dir) -> str:
    return f"local-dir:{tiny_backbone_dir}"


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear(shape=(384, 384), seed=3, name="s3")


@pytest.fixture(scope="module")
def result(smear, backbone_name):
    return process_smear(smear.image, cached_backbone(backbone_name), image_name="s3.png",
                         subject="subj-a")


def test_table_vectors_and_grid_agree(result, smear, backbone_name):
    backbone = cached_backbone(backbone_name)
    table, emb = result.table, result.embeddings
    # every segmented cell has exactly one vector, keyed by (image, label)
    assert set(table["label"]) == set(np.unique(result.labels)) - {0}
    assert sorted(table["embedding_row"]) == list(range(len(emb.label)))
    assert np.array_equal(np.asarray(emb.label)[table["embedding_row"]], table["label"])
    assert set(np.asarray(emb.image)) == {"s3.png"} and set(table["subject"]) == {"subj-a"}
    assert np.asarray(emb.vectors).shape == (len(table), backbone.embed_dim)
    assert np.isfinite(np.asarray(emb.vectors)).all()
    # one grid cell per patch, covering the image from (0, 0)
    patch = backbone.patch_size
    assert result.grid.shape == (-(-384 // patch), -(-384 // patch), backbone.embed_dim)
    # the segmentation finds the synthetic cells (the truth table, minus border cells)
    n_truth = len(smear.cells)
    assert 0.5 * n_truth <= len(table) <= 1.2 * n_truth


def test_outputs_round_trip_and_done_marker(result, backbone_name, tmp_path):
    config = PipelineConfig(backbone=backbone_name)
    assert not is_done(tmp_path, "s3.png", config)
    folder = write_smear_outputs(result, tmp_path, config, source="s3.png")
    assert folder == smear_dir(tmp_path, "s3.png") and (folder / DONE_MARKER).is_file()
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())  # no staging left
    table, emb, grid, labels, marker = load_smear_outputs(folder)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), add_counted(result.table),
                                  check_dtype=False, check_categorical=False)
    np.testing.assert_array_equal(emb.vectors, result.embeddings.vectors)
    np.testing.assert_array_equal(grid, result.grid)
    np.testing.assert_array_equal(labels, result.labels)
    assert marker["n_cells"] == len(result.table)
    assert is_done(tmp_path, "s3.png", config)
    # another pooling is another result: the marker no longer counts
    assert not is_done(tmp_path, "s3.png", PipelineConfig(backbone_name, pooling="patch_mean"))


def test_run_smear_file_skips_finished_and_reports_bad_input(backbone_name, tmp_path):
    files, _ = write_demo_smears(tmp_path / "in", n_subjects=1, images_per_subject=1,
                                 shape=(384, 384))
    config = PipelineConfig(backbone=backbone_name)
    first = run_smear_file(files[0], tmp_path / "out", config, subject="a")
    assert first.status == "done" and first.n_cells > 0
    marker = smear_dir(tmp_path / "out", files[0].name) / DONE_MARKER
    stamp = marker.stat().st_mtime_ns
    again = run_smear_file(files[0], tmp_path / "out", config, subject="a")
    assert again.status == "skipped" and marker.stat().st_mtime_ns == stamp

    corrupt = tmp_path / "in" / "broken.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    failed = run_smear_file(corrupt, tmp_path / "out", config, subject="a")
    assert failed.status == "failed" and "broken.png" in failed.error
    assert not smear_dir(tmp_path / "out", "broken.png").exists()


def test_read_image_errors_are_clear(tmp_path):
    with pytest.raises(PipelineInputError, match="no such image"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.jpg"
    bad.write_text("not an image")
    with pytest.raises(PipelineInputError, match=r"bad\.jpg: this is a text file, not an image"):
        read_image(bad)


def test_find_images_and_subject_map(tmp_path):
    files, mapping = write_demo_smears(tmp_path / "in", n_subjects=2, images_per_subject=1,
                                       shape=(96, 96))
    assert find_images([tmp_path / "in"]) == sorted(files)
    assert find_images([str(tmp_path / "in" / "*.png")]) == sorted(files)
    subjects = read_subject_map(mapping, files)
    truth = pd.read_csv(mapping).set_index("image")["subject"].to_dict()
    assert subjects == truth and len(set(subjects.values())) == 2
    assert read_subject_map(None, files) == {f.name: "in" for f in files}
    with pytest.raises(PipelineInputError, match="no such file"):
        find_images([tmp_path / "nope"])
    partial = tmp_path / "partial.csv"
    pd.DataFrame({"image": [files[0].name], "subject": ["x"]}).to_csv(partial, index=False)
    with pytest.raises(PipelineInputError, match=f"no subject for image '{files[1].name}'"):
        read_subject_map(partial, files)
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"file": ["a"], "who": ["x"]}).to_csv(wrong, index=False)
    with pytest.raises(PipelineInputError, match="needs columns 'image' and 'subject'"):
        read_subject_map(wrong, files)


def test_new_weights_under_the_same_backbone_name_redo_finished_smears(result, tmp_path):
    """A bundled (or local) model replaced by a newer one keeps its name: the marker's weights
    hash must tell, or a rerun would keep the old model's embeddings."""
    from napari_reddino.embed.backbones import build_random_backbone

    folder = build_random_backbone(tmp_path / "bb", img_size=56, embed_dim=48, depth=1,
                                   num_heads=1)
    config = PipelineConfig(backbone=f"local-dir:{folder}")
    write_smear_outputs(result, tmp_path / "run", config, source="s3.png")
    assert is_done(tmp_path / "run", "s3.png", config)
    build_random_backbone(folder, img_size=56, embed_dim=48, depth=1, num_heads=1, seed=1)
    assert not is_done(tmp_path / "run", "s3.png", config)
