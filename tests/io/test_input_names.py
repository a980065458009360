"""Output names from input names (#23 B1-2) and the subject CSV (#23 B6): one image never
overwrites another's outputs, long names work, nothing lands outside the output folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table
from napari_reddino.io.smear_files import (
    PipelineInputError,
    output_stems,
    read_image,
    read_subject_map,
    safe_name,
)
from napari_reddino.runs.pipeline import smear_dir
from napari_reddino.runs.report import write_report

LONG = "s" * 246 + ".png"  # 250 characters: + "_cells.csv" or a staging prefix is over 255


@pytest.fixture(scope="module")
def smear_png(tmp_path_factory) -> Path:
    files, _ = write_demo_smears(tmp_path_factory.mktemp("names"), n_subjects=1,
                                 images_per_subject=1, shape=(160, 160), seed=5)
    return files[0]


def test_safe_names_are_short_unique_and_stay_in_their_folder(tmp_path):
    names = ["a b.png", "a_b.png", LONG, "s" * 246 + ".tif", "../../x.png", "/etc/x.png", ".."]
    safe = [safe_name(n) for n in names]
    assert len(set(safe)) == len(safe)
    assert all(len(s) <= 120 and "/" not in s and s not in (".", "..") for s in safe)
    for name in names:
        folder = smear_dir(tmp_path, name).resolve()
        assert folder.parent == (tmp_path / "smears").resolve()
    assert safe_name("smear1.png") == "smear1.png"  # plain names are kept as they are


def test_output_stems_keep_the_stem_unless_two_images_share_it():
    stems = output_stems([Path("d/y.png"), Path("d/y.tif"), Path("d/y.png.tif"), Path("d/z.png")])
    assert stems["z.png"] == "z"
    assert len(set(stems.values())) == 4


def test_segment_same_stem_two_suffixes_writes_both(smear_png, tmp_path, capsys):
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "y.png").write_bytes(smear_png.read_bytes())
    tifffile.imwrite(folder / "y.tif", read_image(smear_png)[:, ::-1].copy())  # another smear
    long = folder / ("t" * 246 + ".png")
    long.write_bytes(smear_png.read_bytes())
    out = tmp_path / "out"
    assert main(["-q", "segment", str(folder), "--out", str(out)]) == 0
    assert "3 done" in capsys.readouterr().out
    tables = sorted(out.glob("*_cells.csv"))
    assert len(tables) == 3 and len(list(out.glob("*_labels.tif"))) == 3
    images = {str(load_table(t)["image"].iloc[0]) for t in tables}
    assert images == {"y.png", "y.tif", long.name}
    assert all(len(p.name) < 200 for p in out.iterdir())


def test_embed_and_report_with_a_long_name_and_lookalike_names(smear_png, tmp_path,
                                                                tiny_backbone_dir, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("x.y.png", "x_y.png", LONG):
        (folder / name).write_bytes(smear_png.read_bytes())
    run = tmp_path / "run"
    backbone = f"local-dir:{tiny_backbone_dir}"
    subjects = tmp_path / "subjects.csv"  # a subject a spreadsheet would run as a formula
    subjects.write_text(f"image,subject\nx.y.png,=1+1\nx_y.png,b\n{LONG},b\n")
    assert main(["-q", "embed", str(folder), "--out", str(run), "--backbone", backbone,
                 "--pooling", "patch_mean", "--subjects", str(subjects)]) == 0
    assert "3 done" in capsys.readouterr().out
    runs = pd.read_csv(run / "runs.csv")
    assert set(runs["image"]) == {"x.y.png", "x_y.png", LONG}
    assert runs["status"].eq("done").all()
    assert main(["-q", "project", str(run), "--clusters", "2", "--projection", "pca"]) == 0
    write_report(run)
    overlays = sorted((run / "report" / "images").glob("pca_*.png"))
    assert len(overlays) == 3  # x.y.png and x_y.png no longer share one picture
    page = (run / "report" / "index.html").read_text()
    assert all(f"images/{p.name}" in page for p in overlays)
    assert "'=1+1" in (run / "report" / "counts_by_subject.csv").read_text()
    assert "\n=" not in (run / "runs.csv").read_text() and "'=1+1" in (run / "runs.csv").read_text()


def test_label_csv_export_escapes_formulas_and_reads_back(tmp_path):
    from napari_reddino.label.files import export_labels, read_labels

    table = pd.DataFrame({"image": ["=a.png", "b.png"], "subject": ["s", "@s"], "label": [1, 2],
                          "centroid_y": [1.0, 2.0], "centroid_x": [1.0, 2.0],
                          "class": ["=HYPERLINK(\"http://x\")", "-target"],
                          "class_source": ["manual", "manual"], "confidence": [1.0, 1.0]})
    path = export_labels(table, tmp_path / "labels.csv")
    text = path.read_text()
    assert "'=HYPERLINK" in text and "'-target" in text and "'=a.png" in text
    back = read_labels(path)
    assert back["class"].tolist() == table["class"].tolist()
    assert back["image"].tolist() == table["image"].tolist()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("image,subject\nk0.png,\nk1.png,b\n", r"line 2: empty subject"),
        ("image,subject\nk0.png,a\nk1.png,b\n\nk0.png,c\n", r"line 5: image 'k0.png' is "
                                                            r"listed twice \(lines 2 and 5\)"),
        ("image,subject\n,a\nk1.png,b\n", r"line 2: empty image"),
    ],
)
def test_subject_csv_refuses_empty_and_repeated_entries(text, message, tmp_path):
    csv = tmp_path / "subjects.csv"
    csv.write_text(text)
    images = [tmp_path / "k0.png", tmp_path / "k1.png"]
    with pytest.raises(PipelineInputError, match=message) as info:
        read_subject_map(csv, images)
    assert str(csv) in str(info.value)


def test_subject_csv_blank_lines_are_fine(tmp_path):
    csv = tmp_path / "subjects.csv"
    csv.write_text("image,subject\nk0.png,a\n\nk1,b\n")
    mapping = read_subject_map(csv, [tmp_path / "k0.png", tmp_path / "k1.png"])
    assert mapping == {"k0.png": "a", "k1.png": "b"}
    assert not any(isinstance(v, float) and np.isnan(v) for v in mapping.values())
