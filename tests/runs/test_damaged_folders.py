"""A smear folder with part of grid.zarr deleted (#23 B4): `embed` redoes it, `project` and
`report` name it and say what to do instead of "internal error: KeyError: 'grid'"."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pandas as pd
import pytest

from napari_reddino.cli.main import main
from napari_reddino.runs.pipeline import DONE_MARKER, check_smear_outputs, smear_dir
from napari_reddino.runs.report import write_report


@pytest.fixture
def damaged(small_run, tmp_path) -> tuple[Path, Path, str]:
    """A copy of the shared small run with one smear's patch grid deleted."""
    root = tmp_path / "copy"
    shutil.copytree(small_run.parent, root)
    run = root / "run"
    name = sorted(pd.read_csv(run / "runs.csv")["image"])[0]
    shutil.rmtree(smear_dir(run, name) / "grid.zarr" / "grid")
    return run, root / "input", name


def test_the_damaged_folder_is_named(damaged):
    run, _inputs, name = damaged
    problem = check_smear_outputs(smear_dir(run, name))
    assert problem is not None and "grid" in problem


def test_report_names_the_smear_and_what_to_do(damaged):
    run, _inputs, name = damaged
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = write_report(run)
    said = [str(w.message) for w in caught if smear_dir(run, name).name in str(w.message)]
    assert said and "rerun `napari-reddino embed`" in said[0]
    assert "grid.zarr has no grid" in index.read_text()


def test_project_names_the_smear_and_embed_redoes_it(damaged, tiny_backbone_dir, capsys):
    run, inputs, name = damaged
    code = main(["-q", "project", str(run), "--clusters", "2", "--projection", "pca"])
    out = capsys.readouterr()
    assert code == 0, out.err
    assert f"smear folder {smear_dir(run, name).name} left out" in out.out + out.err
    assert "rerun `napari-reddino run` (or `embed`)" in out.out + out.err
    assert main(["-q", "embed", str(inputs), "--out", str(run), "--subjects",
                 str(inputs / "subjects.csv"), "--backbone", f"local-dir:{tiny_backbone_dir}",
                 "--pooling", "patch_mean"]) == 0
    runs = pd.read_csv(run / "runs.csv").set_index("image")
    assert runs.loc[name, "status"] == "done"  # redone, not "already done"
    assert (smear_dir(run, name) / DONE_MARKER).is_file()
    assert check_smear_outputs(smear_dir(run, name)) is None


def test_a_done_but_damaged_folder_is_redone(damaged, tiny_backbone_dir, capsys):
    run, inputs, name = damaged  # marker still there: embed must not say "already done"
    assert (smear_dir(run, name) / DONE_MARKER).is_file()
    assert main(["-q", "embed", str(inputs), "--out", str(run), "--subjects",
                 str(inputs / "subjects.csv"), "--backbone", f"local-dir:{tiny_backbone_dir}",
                 "--pooling", "patch_mean"]) == 0
    assert "unusable" in capsys.readouterr().out
    assert pd.read_csv(run / "runs.csv").set_index("image").loc[name, "status"] == "done"
    assert check_smear_outputs(smear_dir(run, name)) is None
