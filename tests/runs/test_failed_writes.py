"""Nothing lost on a failed write: `project` and `propagate` under `ulimit -f` (a full disk
alike) leave the run's previous files, manual labels included, and name the file and the cause.

The CLI runs in a subprocess whose file size limit is set before it starts (Python ignores
SIGXFSZ, so a write past the limit fails with EFBIG instead of killing the process).
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import CellEmbeddings, load_table
from napari_reddino.runs.anndata_io import write_run_cells
from napari_reddino.runs.combine import NOT_CARRIED_FILE
from napari_reddino.runs.pipeline import PipelineConfig, SmearResult, write_smear_outputs
from napari_reddino.runs.run_files import run_stamps
from tests.runs._run_cells import cells, manual_labels, stamped_run

pytest.importorskip("anndata")

PROJECT = ["project", "--projection", "pca", "--clusters", "2", "--features", "embedding"]


def _run_with_labels(root: Path) -> Path:
    """Two finished smears (no backbone), combined by `project`, four cells labeled by hand."""
    run = root / "run"
    for seed, image in enumerate(("a.png", "b.png")):
        table, embeddings = cells(n=12, seed=seed, image=image)
        table = table.drop(columns=[nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE])
        raster = np.zeros((28, 28), np.int32)
        raster[:12] = table[nm.LABEL].to_numpy()[:, None]
        result = SmearResult(image, f"s{seed}", raster, table, embeddings,
                             np.zeros((2, 2, 8), np.float32), 14)
        write_smear_outputs(result, run, PipelineConfig(backbone="fake"))
    assert main(["-q", PROJECT[0], str(run), *PROJECT[1:]]) == 0
    table = load_table(run / nm.CELLS_TABLE_FILE)
    labeled = [0, 1, len(table) - 2, len(table) - 1]
    table[nm.CLASS] = None
    table[nm.CLASS_SOURCE] = None
    table.loc[labeled, nm.CLASS] = ["discocyte", "discocyte", "echinocyte", "echinocyte"]
    table.loc[labeled, nm.CLASS_SOURCE] = "manual"
    write_run_cells(run, table, CellEmbeddings.load(run / nm.EMBEDDINGS_FILE), projection="pca")
    return run


def _limited_cli(args: list[str], limit: int) -> subprocess.CompletedProcess:
    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "napari_reddino", "-q", *args], env=env,
                          preexec_fn=cap, capture_output=True, text=True, timeout=300,
                          check=False)


@pytest.fixture
def run(tmp_path):
    return _run_with_labels(tmp_path)


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}


@pytest.mark.parametrize("command", [
    PROJECT,
    ["propagate", "--features", "embedding"],
    ["propagate", "--features", "embedding", "--reference", "RUN"],
])
def test_a_write_past_the_file_size_limit_keeps_the_run_and_names_the_file(run, command):
    before, labels = _files(run), manual_labels(run)
    assert len(labels) == 4
    args = [part if part != "RUN" else str(run) for part in command]
    args.insert(1, str(run))
    limit = len(before[nm.CELLS_TABLE_FILE]) // 2  # the new table cannot be written
    done = _limited_cli(args, limit)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert f"could not write cell table {run / nm.CELLS_TABLE_FILE}: file size limit exceeded" \
        in done.stderr
    assert _files(run) == before  # every previous file as it was, no temporary file left
    assert manual_labels(run) == labels
    assert len(set(run_stamps(run).values())) == 1
    # the next project (with room to write) keeps the labels: nothing to report as lost
    assert main(["-q", PROJECT[0], str(run), *PROJECT[1:]]) == 0
    assert manual_labels(run) == labels
    assert not (run / NOT_CARRIED_FILE).exists()


def test_a_failed_h5ad_write_keeps_the_table_written_with_it_and_exits_cleanly(tmp_path):
    run = stamped_run(tmp_path)
    before, labels = _files(run), manual_labels(run)
    # room for the new table and matrix, not for the AnnData: all three stay as they were
    limit = max(len(before[nm.CELLS_TABLE_FILE]), len(before[nm.EMBEDDINGS_FILE])) + 2000
    assert limit < len(before[nm.ANNDATA_FILE])
    done = _limited_cli(["propagate", str(run), "--features", "embedding"], limit)
    assert done.returncode == 2, done.stderr  # not a crash of HDF5 at exit
    assert f"could not write AnnData {run / nm.ANNDATA_FILE}: file size limit exceeded" \
        in done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
    assert _files(run) == before and manual_labels(run) == labels
