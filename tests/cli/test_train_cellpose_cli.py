"""``napari-reddino train-cellpose RUN`` trains on the smears corrected in napari (#29 item 4)."""

from __future__ import annotations

import pytest

from napari_reddino import names as nm
from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table, save_table

pytest.importorskip("cellpose")


def _run_with_corrections(tmp_path, backbone_dir, corrected: int):
    write_demo_smears(tmp_path / "input", n_subjects=3, images_per_subject=1, shape=(128, 128),
                      seed=6)
    run = tmp_path / "run"
    assert main(["-q", "embed", str(tmp_path / "input"), "--out", str(run), "--backbone",
                 f"local-dir:{backbone_dir}"]) == 0
    for folder in sorted((run / "smears").iterdir())[:corrected]:  # as the napari writer saves
        table = load_table(folder / nm.CELLS_TABLE_FILE)
        table[nm.EDITED] = table.index == 0
        save_table(table, folder / nm.CELLS_TABLE_FILE)
    return run


@pytest.mark.slow
def test_trains_on_corrected_smears_and_scores_on_held_back_ones(tiny_cellpose, tmp_path,
                                                                  tiny_backbone_dir, capsys):
    run = _run_with_corrections(tmp_path, tiny_backbone_dir, corrected=3)
    capsys.readouterr()
    assert main(["-q", "train-cellpose", str(run), "--epochs", "1", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "trained on 2 smears" in out and "on 1 held-back smears" in out
    models = list((run / "models" / "models").glob("cellpose_corrected*"))
    assert models and f"--model {models[0]}" in out


def test_one_corrected_smear_is_refused_with_what_to_do(tmp_path, tiny_backbone_dir, capsys):
    run = _run_with_corrections(tmp_path, tiny_backbone_dir, corrected=1)
    assert main(["-q", "train-cellpose", str(run)]) == 2
    assert "needs at least 2" in capsys.readouterr().err
