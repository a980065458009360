"""A run folder moves with its data and opens from any working directory (#25 item 4), and its
smear folders are as readable as the run folder (#27 item 10: not mkdtemp's 0700)."""

from __future__ import annotations

import os
import shutil
import stat

import pytest

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.cli.main import main
from napari_reddino.plugin.reader import read_run_layers


def _images(layers) -> list[str]:
    return sorted(meta["name"] for _data, meta, kind in layers
                  if kind == "image" and not meta["name"].endswith("RedDino PCA"))


@pytest.fixture
def relative_run(tmp_path, tiny_backbone_dir, monkeypatch):
    """A run made the way a user types it: relative paths, from the folder holding both."""
    root = tmp_path / "study"
    write_demo_smears(root / "input", n_subjects=2, images_per_subject=1, shape=(192, 192),
                      seed=4)
    monkeypatch.chdir(root)
    assert main(["-q", "embed", "input", "--out", "run", "--backbone",
                 f"local-dir:{tiny_backbone_dir}"]) == 0
    assert main(["-q", "project", "run", "--clusters", "2", "--projection", "pca"]) == 0
    return root


def test_the_run_and_its_images_moved_together_open_from_elsewhere(relative_run, tmp_path,
                                                                   monkeypatch):
    in_place = _images(read_run_layers(relative_run / "run"))
    assert len(in_place) == 2
    moved = tmp_path / "archive" / "study-2026"
    moved.parent.mkdir()
    shutil.move(relative_run, moved)
    monkeypatch.chdir(tmp_path / "archive")  # another working directory
    assert _images(read_run_layers(moved / "run")) == in_place


def test_the_run_alone_moved_still_finds_its_images(relative_run, tmp_path, monkeypatch):
    in_place = read_run_layers(relative_run / "run")
    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(relative_run / "run", moved)
    monkeypatch.chdir(tmp_path)
    layers = read_run_layers(moved)
    assert _images(layers) == _images(in_place) and len(layers) == len(in_place)


def test_smear_folders_take_the_run_folders_permissions(relative_run):
    run = relative_run / "run"
    smears = [p for p in (run / "smears").iterdir() if p.is_dir()]
    assert smears
    for folder in smears:
        mode = stat.S_IMODE(folder.stat().st_mode)
        assert mode == stat.S_IMODE(folder.parent.stat().st_mode), oct(mode)
        if os.name == "posix":
            assert mode & 0o055  # group / others can read and enter, as the run folder


def test_a_smear_corrected_in_napari_is_kept_by_the_next_run(relative_run, tmp_path, capsys):
    """#29 item 3: the corrected labels and rows saved from napari survive a later `embed`
    over the same smears unless --redo-corrected is given."""
    import numpy as np

    from napari_reddino import names as nm
    from napari_reddino.io.cell_table import load_table
    from napari_reddino.plugin.writer import write_run_folder
    from napari_reddino.runs.corrections import apply_correction, corrected_cells
    from napari_reddino.runs.pipeline import smear_dir

    run = relative_run / "run"
    layers = read_run_layers(run)
    images = {meta["name"]: data for data, meta, kind in layers if kind == "image"}
    out = []
    for data, meta, kind in layers:
        if kind == "labels" and nm.LABEL in meta.get("features", {}):
            table = meta["features"].drop(columns=[nm.NAPARI_INDEX])
            cell = int(table[nm.LABEL].iloc[0])
            after = np.where(data == cell, 0, data)  # the eraser took the first cell
            image = images[meta["metadata"][nm.META_IMAGE_LAYER]]
            fixed = apply_correction(table, data, after, image,
                                     image_name=meta["metadata"][nm.META_IMAGE],
                                     embeddings=meta["metadata"][nm.EMBEDDINGS_KEY])
            edited = int(table[nm.LABEL].iloc[1])  # and the brush added a pixel to another
            after[np.argwhere(after == edited)[0][0] - 1, np.argwhere(after == edited)[0][1]] = \
                edited
            fixed = apply_correction(fixed.table, np.where(data == cell, 0, data), after, image,
                                     image_name=meta["metadata"][nm.META_IMAGE],
                                     embeddings=fixed.embeddings)
            meta = {**meta, "features": fixed.table, "metadata": {
                **meta["metadata"], nm.EMBEDDINGS_KEY: fixed.embeddings}}
            data = after
        out.append((data, meta, kind))
    write_run_folder(str(run), out)
    folder = next(p for p in (run / "smears").iterdir() if p.is_dir())
    assert corrected_cells(folder) >= 1
    before = load_table(folder / nm.CELLS_TABLE_FILE)
    assert main(["run", "input", "--out", "run", "--backbone", "reddino-tiny", "--workers", "1",
                 "--no-report"]) == 0
    said = capsys.readouterr()
    assert "corrected by hand" in said.out + said.err
    assert load_table(folder / nm.CELLS_TABLE_FILE).equals(before)  # kept as corrected
    assert main(["-q", "embed", "input", "--out", "run", "--backbone", "reddino-tiny",
                 "--redo-corrected"]) == 0
    assert corrected_cells(smear_dir(run, before[nm.IMAGE].iloc[0])) == 0
