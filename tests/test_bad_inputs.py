"""The bad-input battery of issue 16, one case per test: labels are never lost or put on the wrong
cells, every bad input gets a clear message (what, which file, what to do), never a traceback.

Run folders here are made without a backbone (classical segmentation + seeded random vectors),
so the battery stays fast; the cases that need the embedding step use the tiny test backbone.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli.main import build_parser, main
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table
from napari_reddino.label.files import Autosaver, export_labels, import_labels, read_labels
from napari_reddino.runs.combine import combine
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    PipelineConfig,
    SmearResult,
    read_image,
    run_smear_file,
    smear_dir,
    write_smear_outputs,
)
from napari_reddino.segment.dispatch import segment
from napari_reddino.synthetic.smear import synthetic_smear

CONFIG = PipelineConfig(backbone="fake-backbone")


def _cells(seed: int, name: str, subject: str = "s1", *, shape=(256, 256)):
    smear = synthetic_smear(shape=shape, seed=seed, name=name)
    seg = segment(smear.image, image_name=name, subject=subject)
    return smear, seg


def _fake_smear(out: Path, name: str, seed: int, subject: str = "s1") -> Path:
    """A finished smear folder: real segmentation, seeded random 16-d vectors."""
    _, seg = _cells(seed, name, subject)
    table = seg.features.sort_values("label").reset_index(drop=True)
    table["embedding_row"] = np.arange(len(table))
    vectors = np.random.default_rng(seed).standard_normal((len(table), 16)).astype(np.float32)
    emb = CellEmbeddings(vectors, [name] * len(table), table["label"], "fake", "cls_crop")
    grid_shape = (*(-(-np.asarray(seg.labels.shape) // 14)), 16)  # the 14-px patch grid
    grid = np.random.default_rng(seed).standard_normal(grid_shape).astype(np.float32)
    result = SmearResult(name, subject, seg.labels, table, emb, grid, 14)
    return write_smear_outputs(result, out, CONFIG)


@pytest.fixture
def run_dir(tmp_path) -> Path:
    out = tmp_path / "run"
    for seed, subject in ((1, "s1"), (2, "s2"), (3, "s2")):
        _fake_smear(out, f"smear{seed}.png", seed, subject)
    return out


# --- 1-4: labels lost or put on the wrong cells ----------------------------------------------
def test_autosave_restored_with_some_smears_open_keeps_the_others(tmp_path):
    saver = Autosaver(tmp_path / "autosave.csv")
    saver.record("a.png", 1, "target")
    saver.record("b.png", 1, "sickle")
    only_a = pd.DataFrame({"image": ["a.png"], "label": [1], "centroid_y": [10.0],
                           "centroid_x": [10.0], "class": ["echinocyte"],
                           "class_source": ["manual"], "confidence": [1.0]})
    Autosaver(tmp_path / "autosave.csv").sync(only_a)  # restored with smear a open only
    restored = Autosaver(tmp_path / "autosave.csv").restore()
    assert sorted(zip(restored["image"], restored["class"])) == [
        ("a.png", "echinocyte"), ("b.png", "sickle")]


def test_project_again_after_propagate_keeps_the_class_columns(run_dir):
    table = combine(run_dir, projection="pca", n_clusters=3).table
    table["class"] = np.where(np.arange(len(table)) % 2, "target", "discocyte")
    table["class_source"] = np.where(np.arange(len(table)) < 5, "manual", "propagated")
    table["confidence"] = 0.5
    save_table(table, run_dir / "cells.parquet")
    combine(run_dir, projection="pca", n_clusters=3)  # `project` again
    again = load_table(run_dir / "cells.parquet")
    keyed = again.set_index(["image", "label"])[["class", "class_source", "confidence"]]
    expected = table.set_index(["image", "label"])[["class", "class_source", "confidence"]]
    pd.testing.assert_frame_equal(keyed.sort_index(), expected.sort_index(), check_dtype=False)


def test_import_into_a_resegmented_smear_labels_the_same_cells(tmp_path):
    _, seg = _cells(4, "s.png")
    table = seg.features.assign(**{"class": "target", "class_source": "manual",
                                   "confidence": 1.0})
    path = export_labels(table.iloc[:6], tmp_path / "labels.csv")
    renumbered = seg.features.copy()
    renumbered["label"] = renumbered["label"].to_numpy()[::-1]  # same cells, new label numbers
    result = import_labels(path, renumbered)
    labeled = result.table[result.table["class"].notna()]
    np.testing.assert_allclose(
        np.sort(labeled[["centroid_y", "centroid_x"]].to_numpy(), axis=0),
        np.sort(table.iloc[:6][["centroid_y", "centroid_x"]].to_numpy(), axis=0))


def test_import_into_another_smear_of_the_same_name_is_refused(tmp_path):
    _, seg = _cells(4, "s.png")
    labels = seg.features.assign(**{"class": "target", "class_source": "manual",
                                    "confidence": 1.0})
    path = export_labels(labels, tmp_path / "labels.csv")
    _, other = _cells(5, "s.png")  # another smear under the same file name
    result = import_labels(path, other.features)
    assert result.n_matched == 0 and "other smears of the same name" in result.message


def test_import_onto_another_image_of_the_same_name_and_layout_is_refused(tmp_path):
    _, seg = _cells(4, "s.png")
    labels = seg.features.assign(**{"class": "target", "class_source": "manual",
                                    "confidence": 1.0})
    result = SmearResult("s.png", "s1", seg.labels, labels.assign(embedding_row=0),
                         CellEmbeddings(np.zeros((1, 4)), ["s.png"], [1], "fake", "cls_crop"),
                         np.zeros((19, 19, 4), np.float32), 14)
    folder = write_smear_outputs(result, tmp_path / "run", CONFIG, source_sha256="a" * 64)
    path = export_labels(load_table(folder / "cells.parquet"), tmp_path / "labels.csv")
    same_layout = seg.features.assign(image_sha256="b" * 64)  # the photo was replaced
    refused = import_labels(path, same_layout)
    assert refused.n_matched == 0 and "content hash differs" in refused.message
    assert import_labels(path, seg.features.assign(image_sha256="a" * 64)).n_matched == len(
        labels)


def test_propagate_refuses_reference_embeddings_of_another_run(run_dir, tmp_path, capsys):
    combine(run_dir, projection="pca", n_clusters=3)
    table = load_table(run_dir / "cells.parquet").iloc[:20].assign(**{"class": "target"})
    save_table(table, tmp_path / "ref.parquet")  # its rows exist in the other run's file too
    other = tmp_path / "other"
    _fake_smear(other, "smear9.png", 9)
    _fake_smear(other, "smear8.png", 8)
    combine(other, projection="pca", n_clusters=2)
    code = main(["-q", "propagate", str(run_dir), "--reference", str(tmp_path / "ref.parquet"),
                 "--reference-embeddings", str(other / "embeddings.npz")])
    assert code == 2 and "does not hold the embeddings of" in capsys.readouterr().err


def test_an_export_error_names_the_chosen_file_not_a_temporary_one(tmp_path):
    (tmp_path / "labels.csv").mkdir()  # the chosen path cannot be written: it is a folder
    table = pd.DataFrame({"image": ["a"], "subject": ["s"], "label": [1], "centroid_y": [1.0],
                          "centroid_x": [1.0], "class": ["target"]})
    with pytest.raises(OSError) as error:
        export_labels(table, tmp_path / "labels.csv")
    assert ".labels.tmp" not in str(error.value) and "labels.csv" in str(error.value)


def test_import_takes_the_plugins_own_autosave(tmp_path):
    saver = Autosaver(tmp_path / "autosave.csv")
    saver.record("a.png", 2, "target")
    features = pd.DataFrame({"image": ["a.png", "a.png"], "subject": "s", "label": [1, 2],
                             "centroid_y": [5.0, 50.0], "centroid_x": [5.0, 50.0]})
    assert import_labels(saver.path, features).table["class"].tolist() == [None, "target"]


def test_names_that_sanitise_alike_get_their_own_folders(tmp_path):
    assert smear_dir(tmp_path, "a b.png") != smear_dir(tmp_path, "a_b.png")


@pytest.fixture(scope="module")
def embed_config(tiny_backbone_dir) -> PipelineConfig:
    return PipelineConfig(backbone=f"local-dir:{tiny_backbone_dir}", pooling="patch_mean")


def _write_png(path: Path, seed: int) -> Path:
    import imageio.v3 as iio

    iio.imwrite(path, synthetic_smear(shape=(224, 224), seed=seed).image)
    return path


def test_an_image_replaced_under_the_same_name_is_redone(tmp_path, embed_config):
    path = _write_png(tmp_path / "smear.png", 1)
    run_smear_file(path, tmp_path / "run", embed_config, subject="s1")
    _write_png(path, 2)
    status = run_smear_file(path, tmp_path / "run", embed_config, subject="s1")
    assert status.status == "done"


def test_a_rerun_with_new_subjects_updates_finished_smears(tmp_path, embed_config):
    path = _write_png(tmp_path / "smear.png", 1)
    run_smear_file(path, tmp_path / "run", embed_config, subject="old")
    run_smear_file(path, tmp_path / "run", embed_config, subject="new")
    table = load_table(smear_dir(tmp_path / "run", "smear.png") / "cells.parquet")
    assert set(table["subject"]) == {"new"}


# --- tracebacks and hangs --------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_backbone(tmp_path_factory) -> Path:
    from napari_reddino.embed.backbones import build_random_backbone

    return build_random_backbone(tmp_path_factory.mktemp("bb") / "small", img_size=56,
                                 embed_dim=48, depth=1, num_heads=1)


def test_truncated_safetensors_names_the_file(small_backbone, tmp_path, capsys):
    folder = shutil.copytree(small_backbone, tmp_path / "broken")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    from napari_reddino.embed.backbones import load_backbone

    with pytest.raises(ValueError, match=r"model\.safetensors is damaged or truncated"):
        load_backbone(f"local-dir:{folder}", device="cpu")


def test_corrupt_config_json_names_the_file(small_backbone, tmp_path):
    folder = shutil.copytree(small_backbone, tmp_path / "broken")
    (folder / "config.json").write_text("{not json")
    from napari_reddino.embed.backbones import load_backbone

    with pytest.raises(ValueError, match=r"config\.json is damaged"):
        load_backbone(f"local-dir:{folder}", device="cpu")


def test_a_damaged_embeddings_file_leaves_its_smear_out_to_be_redone(run_dir):
    folder = smear_dir(run_dir, "smear2.png")
    (folder / "embeddings.npz").write_bytes(b"PK\x03\x04 damaged")
    result = combine(run_dir, projection="pca", n_clusters=3)
    assert "smear2.png left out: damaged output" in " ".join(result.warnings) and not (
        folder / DONE_MARKER).exists()


def test_an_out_of_range_embedding_row_leaves_its_smear_out(run_dir):
    folder = smear_dir(run_dir, "smear3.png")
    table = load_table(folder / "cells.parquet")
    table.loc[0, "embedding_row"] = 10_000
    save_table(table, folder / "cells.parquet")
    result = combine(run_dir, projection="pca", n_clusters=3)
    assert set(result.table["image"]) == {"smear1.png", "smear2.png"}


def test_markup_and_brackets_in_messages_print_as_typed(capsys):
    from napari_reddino.cli.commands import _print_statuses

    runs = pd.DataFrame([{"image": "[red]a[/red].png", "status": "failed",
                          "error": "bad value [/bold] here"}])
    _print_statuses(runs, Path("out[1]"))
    out = capsys.readouterr().out
    assert "failed [red]a[/red].png: bad value [/bold] here" in out


@pytest.mark.parametrize("workers", ["0", "-2"])
def test_run_with_no_workers_is_refused_by_the_parser(workers, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "x.png", "--out", "o", "--workers", workers])
    assert exit_info.value.code == 2 and "must be at least 1" in capsys.readouterr().err


def test_channels_first_image_says_transpose(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "cf.tif", np.zeros((3, 64, 64), np.uint8))
    with pytest.raises(ValueError, match="transpose"):
        read_image(tmp_path / "cf.tif")


def test_a_text_file_is_said_not_to_be_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("patient 12, smear taken 2024-01-01\n")
    with pytest.raises(ValueError, match="text file, not an image"):
        read_image(tmp_path / "notes.png")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_garbage_label_file_gets_a_clear_message(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    path.write_bytes(bytes(range(256)) * 8)
    with pytest.raises(ValueError, match=f"labels{suffix} is not a label table"):
        read_labels(path)


def test_report_suggests_a_command_that_exists(tmp_path, capsys):
    assert main(["-q", "report", str(tmp_path)]) == 2
    assert "`napari-reddino project`" in capsys.readouterr().err


# --- silent wrong results --------------------------------------------------------------------
def test_min_area_above_max_area_is_refused():
    image = synthetic_smear(shape=(128, 128), seed=0).image
    with pytest.raises(ValueError, match=r"min_area \(500\) is larger than max_area \(100\)"):
        segment(image, min_area=500, max_area=100)


def test_a_negative_area_is_refused():
    image = synthetic_smear(shape=(128, 128), seed=0).image
    with pytest.raises(ValueError, match="max_area must be a cell area in pixels >= 0"):
        segment(image, max_area=-5)


def test_a_complex_image_is_refused():
    image = synthetic_smear(shape=(128, 128), seed=0).image.astype(np.complex64)
    with pytest.raises(ValueError, match="complex"):
        segment(image)


def test_cluster_and_map_fallbacks_are_told_to_the_user(run_dir, capsys):
    assert main(["-q", "project", str(run_dir), "--clusters", "1000",
                 "--projection", "pca"]) == 0
    assert "clusters instead of the 1000 asked for" in capsys.readouterr().out


def test_the_pca_fallback_of_a_tiny_run_is_told(tmp_path):
    out = tmp_path / "run"
    folder = _fake_smear(out, "smear1.png", 1)
    table = load_table(folder / "cells.parquet").iloc[:8]
    save_table(table, folder / "cells.parquet")
    result = combine(out, n_clusters=2)
    assert any("PCA instead of umap" in w for w in result.warnings)


def test_an_implausible_segmentation_flag_survives_a_rerun(tmp_path):
    from napari_reddino.runs.pipeline import file_sha256

    path = _write_png(tmp_path / "smear.png", 1)
    _, seg = _cells(1, "smear.png")
    table = seg.features.assign(embedding_row=np.arange(len(seg.features)))
    emb = CellEmbeddings(np.zeros((len(table), 4)), ["smear.png"] * len(table), table["label"],
                         "fake", "cls_crop")
    result = SmearResult("smear.png", "s1", seg.labels, table, emb, np.zeros((2, 2, 4)), 14,
                         warning="only 3 % of the stained area lies in the red cells found")
    write_smear_outputs(result, tmp_path / "run", CONFIG, source_sha256=file_sha256(path))
    status = run_smear_file(path, tmp_path / "run", CONFIG, subject="s1")  # skipped: finished
    assert status.warning.startswith("only 3 % of the stained area")


def test_an_implausible_smear_is_listed_in_the_report(run_dir):
    from napari_reddino.runs.report import write_report

    combine(run_dir, projection="pca", n_clusters=3)
    pd.DataFrame([{"image": "smear1.png", "subject": "s1", "source": "", "status": "done",
                   "n_cells": 1, "seconds": 0.0, "error": "",
                   "warning": "only 3 % of the stained area lies in the 1 red cells found"}]
                 ).to_csv(run_dir / "runs.csv", index=False)
    page = write_report(run_dir, max_overlays=0).read_text()
    assert "smear1.png: only 3 % of the stained area" in page


def test_a_truncated_embeddings_file_names_itself(run_dir):
    path = smear_dir(run_dir, "smear1.png") / "embeddings.npz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"embeddings\.npz is damaged"):
        CellEmbeddings.load(path)


# --- several smears in one viewer ------------------------------------------------------------
def _world_box(layer_data) -> np.ndarray:
    data, kwargs, _ = layer_data
    scale = np.asarray(kwargs.get("scale", (1.0, 1.0)), float)[-2:]
    start = np.asarray(kwargs.get("translate", (0.0, 0.0)), float)[-2:]
    return np.r_[start, start + np.asarray(np.shape(data)[:2], float) * scale]


def test_the_smears_of_a_run_folder_open_side_by_side_not_stacked(run_dir):
    from napari_reddino.plugin.reader import patch_overlay_data, read_run_layers

    layers = read_run_layers(run_dir)
    labels = [layer for layer in layers if layer[2] == "labels"]
    boxes = [_world_box(layer) for layer in labels]
    for i, a in enumerate(boxes):  # no two smears overlap
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]
    for labels_layer in labels:  # each overlay, made when asked, lies on its own smear
        _, kwargs, _ = labels_layer
        overlay = patch_overlay_data(kwargs["metadata"], kwargs.get("scale"),
                                     kwargs.get("translate"))
        box, over = _world_box(labels_layer), _world_box(overlay)
        assert np.all(over[:2] >= box[:2] - 21) and np.all(over[2:] <= box[2:] + 21)  # 1.5 patch


# --- training ---------------------------------------------------------------------------------
def test_resuming_with_another_model_depth_is_refused_naming_the_key(tmp_path):
    pytest.importorskip("torch")
    from training.configs import ConfigError, load_config
    from training.train.distributed import DistEnv
    from training.train.loop import Trainer

    def config(*extra):
        return load_config("tiny_cpu", [f"run.output_dir={tmp_path}", "run.iters=10",
                                        "data.batch_size_per_gpu=4", *extra])

    Trainer(config("run.stop_after=1"), DistEnv()).fit()
    with pytest.raises(ConfigError, match=r"model\.depth: 2 -> 3.*resuming would silently drop"):
        Trainer(config("model.depth=3"), DistEnv())
