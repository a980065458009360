"""``napari-reddino differential`` and the differential ``propagate`` writes: counted cells."""

from __future__ import annotations

import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table
from napari_reddino.label.differential import DIFFERENTIAL_FILE, differential
from tests.label.test_counted_defaults import BORDER, NEAR, WBC, cells
from tests.label.test_differential import hand_table


def _table(table: pd.DataFrame) -> pd.DataFrame:
    """The columns a saved cell table needs (centroids, area)."""
    return table.assign(**{nm.CENTROID_Y: 10.0 * table[nm.LABEL], nm.CENTROID_X: 5.0,
                           nm.AREA: 100.0})


def test_differential_command_writes_the_core_s_table(tmp_path, capsys):
    table = _table(hand_table())
    save_table(table, tmp_path / nm.CELLS_TABLE_FILE)
    assert main(["-q", "differential", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20 of 22 objects counted" in out
    assert "A: 20 red cells counted; target cells 1+, schistocytes 3+" in out
    written = pd.read_csv(tmp_path / DIFFERENTIAL_FILE, keep_default_na=False)
    expected = differential(table)
    assert written[["class", "cells", "counted", "grade"]].astype(str).equals(
        expected[["class", "cells", "counted", "grade"]].astype(str))


def test_differential_command_all_objects_switch(tmp_path):
    save_table(_table(hand_table()), tmp_path / nm.CELLS_TABLE_FILE)
    assert main(["-q", "differential", str(tmp_path), "--all-objects"]) == 0
    written = pd.read_csv(tmp_path / DIFFERENTIAL_FILE)
    row = written[(written["level"] == "smear") & (written["image"] == "a1")
                  & (written["class"] == "target cell")].iloc[0]
    assert (row["cells"], row["counted"]) == (4, 11)


def test_differential_command_says_what_is_missing(tmp_path, capsys):
    assert main(["-q", "differential", str(tmp_path)]) == 2
    assert "no cells.parquet" in capsys.readouterr().err
    save_table(_table(hand_table()).drop(columns="class"), tmp_path / nm.CELLS_TABLE_FILE)
    assert main(["-q", "differential", str(tmp_path)]) == 2
    assert "no classes yet" in capsys.readouterr().err


def _run_folder(folder):
    from napari_reddino.runs.anndata_io import write_run_cells

    table, x = cells()
    table = _table(table)
    embeddings = CellEmbeddings(x, table[nm.IMAGE].to_numpy(), table[nm.LABEL].to_numpy(),
                                backbone="test", pooling="cls_crop")
    folder.mkdir()
    write_run_cells(folder, table, embeddings)
    return folder


@pytest.mark.parametrize("all_objects", [False, True])
def test_propagate_counts_counted_cells_and_writes_the_differential(tmp_path, capsys,
                                                                    all_objects):
    run = _run_folder(tmp_path / "run")
    switch = ["--all-objects"] if all_objects else []
    assert main(["-q", "propagate", str(run), "--features", "embedding", "--k", "1",
                 "--classifier", "knn", *switch]) == 0
    out = capsys.readouterr().out
    assert "16 of 18 objects counted" in out
    table = load_table(run / nm.CELLS_TABLE_FILE)
    assert table.loc[NEAR, nm.CLASS] == ("B" if all_objects else "A")
    assert table.loc[BORDER, nm.CLASS] == "B"  # the manual label on the bordering object stays
    if not all_objects:
        assert pd.isna(table.loc[WBC, nm.CLASS]) and pd.isna(table.loc[WBC, nm.CLASS_SOURCE])
    written = pd.read_csv(run / DIFFERENTIAL_FILE)
    subject = written[written["level"] == "subject"]
    assert subject["counted"].iloc[0] == (18 if all_objects else 16)  # every object: a class
