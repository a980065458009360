"""A small run folder written by the CLI (`embed` + `project`), shared by the reader and AnnData
tests: two synthetic smears of two subjects, the tiny random backbone, a PCA map."""

from __future__ import annotations

from pathlib import Path

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.cli.main import main


def write_small_run(root: Path, backbone_dir: Path) -> Path:
    """``root/run`` holding smears/, cells.parquet, embeddings.npz, cells.h5ad; returns it."""
    _files, mapping = write_demo_smears(root / "input", n_subjects=2, images_per_subject=1,
                                        shape=(256, 256), seed=3)
    run = root / "run"
    backbone = f"local-dir:{backbone_dir}"
    assert main(["-q", "embed", str(root / "input"), "--out", str(run), "--subjects",
                 str(mapping), "--backbone", backbone, "--pooling", "patch_mean"]) == 0
    assert main(["-q", "project", str(run), "--clusters", "3", "--projection", "pca"]) == 0
    return run
