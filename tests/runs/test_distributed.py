"""Batches on a real dask LocalCluster: same results as in-process, crash-safe reruns, failures."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from distributed.diagnostics.plugin import WorkerPlugin

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.runs.combine import combine, finished_smears
from napari_reddino.runs.distributed import FAILURES_TABLE, RUNS_TABLE, run_batch
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    PipelineConfig,
    cached_backbone,
    load_smear_outputs,
    process_smear,
    read_image,
    read_subject_map,
    smear_dir,
)

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/


class KillOnce(WorkerPlugin):
    """Kills the worker process the first time it starts executing ``image``'s task."""

    def __init__(self, image: str, marker: str):
        self.image, self.marker = image, marker

    def transition(self, key, start, finish, **kwargs):
        mine = finish == "executing" and f"smear-{self.image}-" in str(key)
        if mine and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def smears(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smears")
    files, mapping = write_demo_smears(folder, n_subjects=2, images_per_subject=2,
                                       shape=(320, 320), seed=1)
    return files, read_subject_map(mapping, files)


@pytest.fixture(scope="module")
def config(tiny_backbone_dir) -> PipelineConfig:
    # patch_mean pooling: no per-cell crops through the ViT, so the tests stay fast
    return PipelineConfig(backbone=f"local-dir:{tiny_backbone_dir}", pooling="patch_mean")


def _mtimes(out: Path, files) -> dict[str, int]:
    return {f.name: (smear_dir(out, f.name) / DONE_MARKER).stat().st_mtime_ns for f in files}


def test_batch_matches_in_process_and_skips_corrupt(client, smears, config, tmp_path):
    files, subjects = smears
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    out = tmp_path / "run"
    batch = run_batch([*files, corrupt], out, config, subjects=subjects, client=client)
    assert batch.count("done") == len(files) and batch.count("failed") == 1
    failures = pd.read_csv(out / FAILURES_TABLE)
    assert failures["image"].tolist() == ["corrupt.png"]
    assert "cannot read image" in failures["error"].iloc[0]
    assert len(pd.read_csv(out / RUNS_TABLE)) == len(files) + 1
    assert len(finished_smears(out)) == len(files)

    # a worker's outputs are the in-process pipeline's outputs
    backbone = cached_backbone(config.backbone)
    for path in files[:2]:
        expected = process_smear(read_image(path), backbone, image_name=path.name,
                                 subject=subjects[path.name], pooling=config.pooling)
        table, emb, grid, labels, _ = load_smear_outputs(smear_dir(out, path.name))
        np.testing.assert_array_equal(labels, expected.labels)
        assert table["label"].tolist() == expected.table["label"].tolist()
        assert set(table["subject"]) == {subjects[path.name]}
        np.testing.assert_allclose(emb.vectors, expected.embeddings.vectors, atol=1e-4)
        np.testing.assert_allclose(grid, expected.grid, atol=1e-4)

    combined = combine(out, n_clusters=3, projection="pca")
    n_cells = sum(len(load_smear_outputs(f)[0]) for f in finished_smears(out))
    assert len(combined.table) == n_cells == len(combined.embeddings.vectors)
    assert set(combined.table["image"]) == {f.name for f in files}
    counted = combined.table["counted"].to_numpy()  # only intact red cells are mapped
    assert set(combined.table.loc[counted, "cluster"]) == {0, 1, 2}
    assert (combined.table.loc[~counted, "cluster"] == -1).all()
    assert np.isfinite(combined.table.loc[counted, ["umap_0", "umap_1"]].to_numpy()).all()
    assert set(combined.metrics["subject"]) == set(subjects.values())
    # pooled embedding_row points at each cell's own vector
    rows = combined.table["embedding_row"].to_numpy()
    assert np.array_equal(np.asarray(combined.embeddings.label)[rows], combined.table["label"])


def test_killed_worker_and_rerun_redo_only_missing(client, smears, config, tmp_path):
    files, subjects = smears
    out = tmp_path / "run"
    killed = tmp_path / "killed"
    client.register_plugin(KillOnce(files[1].name, str(killed)), name="kill-once")
    try:
        batch = run_batch(files, out, config, subjects=subjects, client=client)
    finally:
        client.unregister_worker_plugin("kill-once")
    assert killed.exists()  # a worker really died running files[1] ...
    assert batch.count("done") == len(files)  # ... and its smear was rescheduled and finished
    first = _mtimes(out, files)

    again = run_batch(files, out, config, subjects=subjects, client=client)
    assert again.count("skipped") == len(files)
    assert _mtimes(out, files) == first

    # a run interrupted while writing smear 2 leaves its folder without marker: only it is redone
    (smear_dir(out, files[2].name) / DONE_MARKER).unlink()
    shutil.rmtree(smear_dir(out, files[2].name) / "grid.zarr")
    third = run_batch(files, out, config, subjects=subjects, client=client)
    statuses = third.runs.set_index("image")["status"].to_dict()
    assert statuses.pop(files[2].name) == "done"
    assert set(statuses.values()) == {"skipped"}
    now = _mtimes(out, files)
    assert now[files[2].name] > first[files[2].name]
    assert {k: v for k, v in now.items() if k != files[2].name} == {
        k: v for k, v in first.items() if k != files[2].name}
