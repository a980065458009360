"""A run folder's cells.parquet, embeddings.npz and cells.h5ad are written together (one stamp)
and every reader refuses files that were not: rd.read_run, the napari reader, the CLI."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

import napari_reddino as rd
from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table, save_table
from napari_reddino.plugin.reader import read_run_layers
from napari_reddino.runs import anndata_io
from napari_reddino.runs.run_files import RunMismatchError, check_run_files, run_stamps
from tests.runs._run_cells import cells, stamped_run

pytest.importorskip("anndata")


def test_the_three_files_share_one_new_stamp_per_writing(tmp_path):
    stamped_run(tmp_path)
    first = run_stamps(tmp_path)
    assert set(first) == {nm.CELLS_TABLE_FILE, nm.EMBEDDINGS_FILE, nm.ANNDATA_FILE}
    assert len(set(first.values())) == 1 and None not in first.values()
    assert check_run_files(tmp_path) == first[nm.CELLS_TABLE_FILE]
    stamped_run(tmp_path, seed=1)
    second = set(run_stamps(tmp_path).values())
    assert len(second) == 1 and second != set(first.values())


def test_propagate_rewrites_the_h5ad_so_read_run_sees_the_new_classes(tmp_path, capsys):
    stamped_run(tmp_path)
    assert main(["-q", "propagate", str(tmp_path), "--features", "embedding"]) == 0
    table = load_table(tmp_path / nm.CELLS_TABLE_FILE)
    assert table[nm.CLASS].notna().all()
    adata = rd.read_run(tmp_path)  # was the stale cells.h5ad of before the propagation
    assert adata.obs[nm.CLASS].astype(str).tolist() == table[nm.CLASS].tolist()
    assert (adata.obs[nm.CLASS_SOURCE].astype(str) == "propagated").sum() == len(table) - 4
    assert len(set(run_stamps(tmp_path).values())) == 1


def test_another_runs_embeddings_are_refused_by_every_reader(tmp_path, capsys):
    run, other = stamped_run(tmp_path / "run"), stamped_run(tmp_path / "other", seed=5)
    shutil.copy(other / nm.EMBEDDINGS_FILE, run / nm.EMBEDDINGS_FILE)
    for read in (rd.read_run, anndata_io.run_anndata, read_run_layers):
        with pytest.raises(RunMismatchError, match=r"embeddings\.npz") as caught:
            read(run)
        message = str(caught.value)
        assert "not written together" in message and f"napari-reddino project {run}" in message
    assert main(["-q", "report", str(run)]) == 2
    assert "embeddings.npz" in capsys.readouterr().err


def test_a_table_written_alone_beside_stamped_files_is_refused(tmp_path):
    run = stamped_run(tmp_path)
    table = load_table(run / nm.CELLS_TABLE_FILE).assign(**{nm.CLASS: "target"})
    save_table(table, run / nm.CELLS_TABLE_FILE)  # no stamp: another writer, an older version
    with pytest.raises(RunMismatchError, match=r"cells\.parquet \(no stamp\)"):
        rd.read_run(run)


def test_propagate_accepts_a_table_edited_by_another_tool_and_restamps_the_run(tmp_path):
    run = stamped_run(tmp_path)
    table = pd.read_parquet(run / nm.CELLS_TABLE_FILE)
    table.to_parquet(run / nm.CELLS_TABLE_FILE, index=False)  # pandas keeps no stamp
    assert main(["-q", "propagate", str(run), "--features", "embedding"]) == 0  # cell by cell
    stamps = set(run_stamps(run).values())
    assert len(stamps) == 1 and None not in stamps


def test_old_unstamped_run_folders_still_load_and_are_checked_cell_by_cell(tmp_path):
    table, embeddings = cells()
    save_table(table, tmp_path / nm.CELLS_TABLE_FILE)
    embeddings.save(tmp_path / nm.EMBEDDINGS_FILE)
    adata = rd.read_run(tmp_path)  # no cells.h5ad: built from the two
    assert adata.n_obs == len(table) and nm.RUN_STAMP not in adata.uns
    np.testing.assert_allclose(adata.obsm[nm.X_EMBEDDING], embeddings.vectors)
    anndata_io.write_run_h5ad(tmp_path)
    assert check_run_files(tmp_path) is None and rd.read_run(tmp_path).n_obs == len(table)
    _other_table, other = cells(image="b.png")
    other.save(tmp_path / nm.EMBEDDINGS_FILE)  # unstamped too: the cells themselves disagree
    with pytest.raises(ValueError, match="does not hold the embeddings of"):
        anndata_io.run_anndata(tmp_path)


def test_write_run_restamps_all_files_and_names_a_missing_label_column(tmp_path):
    adata = rd.read_run(stamped_run(tmp_path / "a"))
    rd.write_run(adata, tmp_path / "b")
    stamps = set(run_stamps(tmp_path / "b").values())
    assert len(stamps) == 1 and stamps != set(run_stamps(tmp_path / "a").values())
    assert rd.read_run(tmp_path / "b").n_obs == adata.n_obs
    adata.obs = adata.obs.drop(columns=[nm.LABEL])
    with pytest.raises(ValueError, match=r"write_run needs \.obs columns \['label'\]"):
        rd.write_run(adata, tmp_path / "c")


@pytest.mark.parametrize("name", [nm.CELLS_TABLE_FILE, nm.ANNDATA_FILE, nm.EMBEDDINGS_FILE])
def test_a_truncated_file_is_named_damaged_with_what_to_do(tmp_path, name, capsys):
    run = stamped_run(tmp_path)
    data = (run / name).read_bytes()
    (run / name).write_bytes(data[: len(data) // 2])
    for read in (rd.read_run, read_run_layers):
        with pytest.raises(ValueError, match=rf"{run / name} is damaged") as caught:
            read(run)
        assert "napari-reddino project" in str(caught.value)
    assert main(["-q", "report", str(run)]) == 2
    assert f"{run / name} is damaged" in capsys.readouterr().err


def test_readers_of_single_files_name_a_damaged_one(tmp_path):
    run = stamped_run(tmp_path)
    for name, read in ((nm.CELLS_TABLE_FILE, load_table), (nm.ANNDATA_FILE, rd.read_run),
                       (nm.ANNDATA_FILE, anndata_io.read_h5ad)):
        path = run / name
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
        with pytest.raises(ValueError, match=rf"{path} is damaged \(truncated"):
            read(path)
        path.write_bytes(data)
    assert len(pd.read_parquet(run / nm.CELLS_TABLE_FILE)) == 24
