"""Evaluation harness: synthetic cell folders, probe/k-NN truth, and the CLI end to end."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import pytest

from training.eval.datasets import load_labeled_cells, make_synthetic_cell_folder, read_cell_image
from training.eval.harness import main
from training.eval.probe import evaluate_split, make_splits, score


@pytest.fixture(scope="module")
def cell_folder(tmp_path_factory):
    """About 30 crops of 2 synthetic subjects (the subjects are the sources)."""
    folder = tmp_path_factory.mktemp("cells") / "synthetic"
    make_synthetic_cell_folder(
        folder, n_subjects=2, images_per_subject=1, shape=(256, 256), crop=48, seed=3
    )
    return folder


def test_synthetic_crops_are_centered_on_the_generator_cells(cell_folder):
    from napari_reddino.synthetic.smear import RBC_CLASSES, synthetic_dataset

    table = pd.read_csv(cell_folder / "cells.csv")
    smears = synthetic_dataset(
        n_subjects=2,
        images_per_subject=1,
        shape=(256, 256),
        seed=3,
        class_weights=dict.fromkeys(RBC_CLASSES, 1.0),
    )
    truth = pd.concat([s.cells for s in smears])
    truth = truth[truth["class"].isin(RBC_CLASSES)].set_index(["image", "label"])
    assert len(table) == len(truth) > 20
    images = {s.cells["image"].iloc[0]: s.image for s in smears}
    for row in table.itertuples():
        cell = truth.loc[(row.image, row.cell_label)]
        assert row.label == cell["class"] and row.source == cell["subject"]
        crop = read_cell_image(cell_folder / row.path)
        assert crop.shape == (48, 48, 3)
        center = images[row.image][round(cell["centroid_y"]), round(cell["centroid_x"])]
        np.testing.assert_array_equal(crop[24, 24], center)
    from_folder = load_labeled_cells(cell_folder)
    from_table = load_labeled_cells(cell_folder / "cells.csv")
    assert from_folder.paths == from_table.paths
    assert list(from_folder.labels) == list(from_table.labels)
    assert sorted(from_folder.sources) == sorted(table["source"])


def test_metrics_by_hand():
    y_true = np.array(["a", "a", "a", "b"])
    y_pred = np.array(["a", "a", "b", "b"])
    scores = score(y_true, y_pred)
    assert scores["accuracy"] == pytest.approx(0.75)
    assert scores["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    f1_a, f1_b = 2 * 1 * (2 / 3) / (1 + 2 / 3), 2 * 0.5 * 1 / 1.5
    assert scores["weighted_f1"] == pytest.approx(0.75 * f1_a + 0.25 * f1_b)


def test_classifiers_find_a_planted_signal_and_not_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(["disc", "sphero", "sickle"], 30)
    sources = np.tile(["s1", "s2", "s3"], 30)
    noise = rng.normal(size=(90, 16)).astype(np.float32)
    planted = noise * 0.1
    planted[:, :3] += np.eye(3)[np.searchsorted(["disc", "sickle", "sphero"], labels)] * 3
    for name, train, test in make_splits("loso", labels, sources):
        assert set(sources[test]) == {name.split("=")[1]}
        assert name.split("=")[1] not in set(sources[train])
        results = evaluate_split(planted, labels, train, test)
        assert all(r["accuracy"] == 1.0 for r in results.values())
        chance = evaluate_split(noise, labels, train, test)
        assert all(r["accuracy"] < 0.7 for r in chance.values())
    kfold = make_splits("kfold", labels, sources, n_folds=5, seed=0)
    assert len(kfold) == 5
    assert sorted(np.concatenate([test for _, _, test in kfold])) == list(range(90))
    with pytest.raises(ValueError, match="at least 2 sources"):
        make_splits("loso", labels, np.full(90, "one"))


@pytest.mark.slow
def test_cli_end_to_end_with_check(cell_folder, tiny_backbone_dir, tmp_path, capsys):
    out = tmp_path / "results.json"
    backbone = f"local-dir:{tiny_backbone_dir}"
    argv = ["--backbone", backbone, "--data", str(cell_folder), "--protocol", "both"]
    argv += ["--folds", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "linear probe" in printed and "20-NN" in printed and "±" in printed
    results = json.loads(out.read_text())
    cells = load_labeled_cells(cell_folder)
    assert results["dataset"]["n_cells"] == len(cells)
    assert results["features"]["shape"] == [len(cells), 192]
    loso = results["protocols"]["loso"]
    assert [f["name"] for f in loso["folds"]] == ["test=subject_0", "test=subject_1"]
    for fold in loso["folds"]:
        held_out = fold["name"].split("=")[1]
        assert fold["n_test"] == int((cells.sources == held_out).sum())
        for metrics in fold["results"].values():
            assert all(0.0 <= v <= 1.0 for v in metrics.values())
    probe_f1 = [f["results"]["linear_probe"]["weighted_f1"] for f in loso["folds"]]
    summary = loso["summary"]["linear_probe"]["weighted_f1"]
    assert summary["mean"] == pytest.approx(np.mean(probe_f1))
    assert summary["std"] == pytest.approx(np.std(probe_f1))
    assert len(results["protocols"]["kfold"]["folds"]) == 2

    # --check recomputes everything: only the number tampered with may differ.
    tampered = json.loads(out.read_text())
    tampered["protocols"]["kfold"]["folds"][1]["results"]["knn1"]["accuracy"] += 0.01
    (tmp_path / "tampered.json").write_text(json.dumps(tampered))
    assert main(["--check", str(tmp_path / "tampered.json")]) == 1
    mismatch = capsys.readouterr().out.split("MISMATCH")[1].strip().splitlines()[1:]
    assert [line.split(":")[0].strip() for line in mismatch] == [
        "protocols/kfold/folds/fold=1/results/knn1/accuracy"
    ]


def test_cli_bad_input_gives_one_clear_line(tmp_path, cell_folder, capsys):
    assert main(["--backbone", "vit_tiny", "--data", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    one_source = tmp_path / "one_source"
    (one_source / "s1" / "disc").mkdir(parents=True)
    (one_source / "s1" / "sphero").mkdir(parents=True)
    for path in sorted(cell_folder.rglob("*.png"))[:4]:
        target = (
            one_source
            / "s1"
            / ("disc" if len(list(one_source.rglob("*.png"))) < 2 else "sphero")
            / path.name
        )
        target.write_bytes(path.read_bytes())
    assert main(["--backbone", "vit_tiny", "--data", str(one_source)]) == 2
    assert "at least 2 sources" in capsys.readouterr().err
    bad_table = tmp_path / "cells.csv"
    bad_table.write_text("file,class\na.png,disc\n")
    assert main(["--backbone", "vit_tiny", "--data", str(bad_table)]) == 2
    assert "lacks column(s) ['label', 'path']" in capsys.readouterr().err
    assert main(["make-synthetic", "--out", str(cell_folder)]) == 2
    assert "not empty" in capsys.readouterr().err


def test_features_keep_row_order_across_mixed_sizes_and_gray(tmp_path, tiny_backbone):
    import imageio.v3 as iio

    from napari_reddino.progress import run_to_completion
    from training.eval.datasets import load_labeled_cells
    from training.eval.harness import iter_cls_features

    rng = np.random.default_rng(0)
    rows = []
    for i, (size, gray) in enumerate([(40, False), (56, False), (40, True), (40, False)]):
        shape = (size, size) if gray else (size, size, 3)
        iio.imwrite(tmp_path / f"c{i}.png", rng.integers(0, 255, shape, dtype=np.uint8))
        rows.append({"path": f"c{i}.png", "label": "ab"[i % 2], "source": "s"})
    pd.DataFrame(rows).to_csv(tmp_path / "cells.csv", index=False)
    cells = load_labeled_cells(tmp_path / "cells.csv")
    features = run_to_completion(iter_cls_features(cells, tiny_backbone, batch_size=2))
    assert features.shape == (4, tiny_backbone.embed_dim)
    for row, path in enumerate(cells.paths):
        alone, _ = tiny_backbone.forward(read_cell_image(path)[None])
        np.testing.assert_allclose(features[row], alone[0], rtol=1e-4, atol=1e-5)


BCCD = Path(__file__).resolve().parents[4] / "shared" / "data" / "bccd"


@pytest.mark.skipif(not (BCCD / "Annotations").is_dir(), reason="needs ../shared/data/bccd")
def test_bccd_crops_are_the_annotated_real_cells(tmp_path):
    from training.eval.bccd import make_bccd_cell_folder, read_bccd_boxes

    boxes = read_bccd_boxes(BCCD)
    assert set(boxes["label"]) == {"RBC", "WBC", "Platelets"}
    assert set(boxes["source"]) <= {"train", "val", "test", "unsplit"}
    table = make_bccd_cell_folder(BCCD, tmp_path / "bccd", crop=32, max_per_class=4, seed=0)
    assert table.groupby("label").size().to_dict() == {"Platelets": 4, "RBC": 4, "WBC": 4}
    cells = load_labeled_cells(tmp_path / "bccd")
    assert len(cells) == 12
    # WBC crops hold a stained nucleus: much bluer than RBC crops.
    blueness = {
        label: np.mean(
            [
                read_cell_image(p)[..., 2].mean() - read_cell_image(p)[..., 0].mean()
                for p, lab in zip(cells.paths, cells.labels)
                if lab == label
            ]
        )
        for label in ("RBC", "WBC")
    }
    assert blueness["WBC"] > blueness["RBC"] + 10


def test_harness_runs_on_the_bundled_default_and_reproduces_itself(cell_folder, tmp_path):
    """`python -m training.eval --backbone reddino-tiny`: the plugin's offline default, then
    `--check` recomputes the saved run and finds every number again (determinism)."""
    out = tmp_path / "bundled.json"
    argv = ["--backbone", "reddino-tiny", "--data", str(cell_folder), "--protocol", "kfold",
            "--folds", "2", "--out", str(out)]
    assert main(argv) == 0
    results = json.loads(out.read_text())
    assert results["backbone"]["name"] == "reddino-tiny"
    assert main(["--check", str(out)]) == 0


def test_chula_crops_sit_on_the_labeled_centers(tmp_path):
    from training.eval.chula import generic_descriptor, make_chula_cell_folder

    root = tmp_path / "chula"
    (root / "images").mkdir(parents=True)
    image = np.full((120, 160, 3), 200, np.uint8)
    image[40:50, 60:70] = (255, 0, 0)  # a red square centered at (x=65, y=45)
    iio.imwrite(root / "images" / "1.png", image)
    pd.DataFrame({"image": ["1.png", "1.png", "1.png"], "x": [65, 20, 100], "y": [45, 20, 90],
                  "class_id": [0, 3, 10],
                  "class_name": ["Normal cell", "Spherocyte", "uncategorized"]}).to_csv(
        root / "labels.csv", index=False)
    table = make_chula_cell_folder(root, tmp_path / "out", crop=16)
    assert sorted(table["label"]) == ["Normal_cell", "Spherocyte"]  # uncategorized dropped
    cells = load_labeled_cells(tmp_path / "out")
    crop = read_cell_image(cells.paths[list(cells.labels).index("Normal_cell")])
    assert crop.shape == (16, 16, 3)
    assert (crop[3:13, 3:13] == (255, 0, 0)).all() and (crop[0] == 200).all()
    features = generic_descriptor(np.stack([crop, crop]))
    assert features.shape[0] == 2 and np.isfinite(features).all()
    assert (features[0] == features[1]).all()
