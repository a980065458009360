"""`napari-reddino propagate --features`: the space decides what the votes see."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.cli.main import build_parser, main
from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table


def _run_folder(folder, n, seed, *, labeled):
    """A run folder whose class shows in morph_area only; the embedding is pure noise."""
    rng = np.random.default_rng(seed)
    big = rng.integers(0, 2, n).astype(bool)
    table = pd.DataFrame({
        "label": np.arange(1, n + 1), "image": f"smear{seed}.png", "subject": "s",
        "centroid_y": rng.uniform(0, 500, n), "centroid_x": rng.uniform(0, 500, n),
        "area": np.where(big, 900.0, 400.0), "embedding_row": np.arange(n),
        "morph_area": np.where(big, 900.0, 400.0) + rng.normal(0, 30, n),
        "morph_circularity": rng.uniform(0.85, 1.0, n),
    })
    if labeled:
        table["class"] = np.where(big, "macrocyte", "microcyte")
    folder.mkdir()
    save_table(table, folder / "cells.parquet")
    CellEmbeddings(vectors=rng.standard_normal((n, 16)).astype(np.float32),
                   image=table["image"].to_numpy(), label=table["label"].to_numpy(),
                   backbone="noise", pooling="cls_crop").save(folder / "embeddings.npz")
    return np.where(big, "macrocyte", "microcyte")


@pytest.mark.parametrize(("space", "good"), [("morphology", True), ("both", True),
                                             ("embedding", False)])
def test_propagate_features_flag(tmp_path, capsys, space, good):
    _run_folder(tmp_path / "ref", 60, 0, labeled=True)
    truth = _run_folder(tmp_path / "run", 300, 1, labeled=False)
    assert main(["-q", "propagate", str(tmp_path / "run"), "--reference", str(tmp_path / "ref"),
                 "--features", space, "--classifier", "logreg"]) == 0
    assert f"{space} space, logreg" in capsys.readouterr().out
    accuracy = (load_table(tmp_path / "run" / "cells.parquet")["class"].to_numpy() == truth).mean()
    assert accuracy > 0.95 if good else accuracy < 0.75


def test_features_flag_on_run_and_project_and_bad_value(capsys):
    parser = build_parser()
    args = parser.parse_args(["run", "x.png", "--out", "o", "--features", "both"])
    assert args.features == "both"
    # the table's space; tables without morphology fall back to the embedding (resolve_space)
    assert parser.parse_args(["project", "o"]).features == DEFAULTS.space
    with pytest.raises(SystemExit):
        parser.parse_args(["propagate", "o", "--reference", "r", "--features", "shape"])
    assert "invalid choice" in capsys.readouterr().err
