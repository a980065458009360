"""Counted cells by default in propagation, review, suggestions, the map and ``rd.tl``."""

from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from napari_reddino import names as nm
from napari_reddino import tl
from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.analysis import analyze
from napari_reddino.label import differential as diff_module
from napari_reddino.label.counting import counted_rows
from napari_reddino.label.propagate import (
    iter_propagate_features,
    propagate,
    propagate_features,
    review_order,
)
from napari_reddino.label.suggest import suggest_cells

BORDER, WBC, NEAR = 16, 17, 2  # a labeled object cut by the border; a white cell; its twin


def cells() -> tuple[pd.DataFrame, np.ndarray]:
    """Two groups of counted cells (A: rows 0-7, B: 8-15) with two manual labels each, a
    bordering object labeled "B" that sits exactly on cell 2 of group A, and a white cell."""
    rng = np.random.default_rng(0)
    x = np.zeros((18, 8), np.float32)
    x[:8, 0], x[8:16, 1], x[BORDER:, 0] = 1.0, 1.0, 1.0
    x += rng.normal(0, 0.05, x.shape).astype(np.float32)
    x[BORDER] = x[NEAR]
    classes = [None] * 18
    classes[0] = classes[1] = "A"
    classes[8] = classes[9] = classes[BORDER] = "B"
    table = pd.DataFrame({
        nm.IMAGE: "s1.png", nm.SUBJECT: "P1", nm.LABEL: np.arange(1, 19), nm.AREA: 100.0,
        nm.KIND: ["rbc"] * WBC + ["wbc"], nm.TOUCHES_BORDER: np.arange(18) == BORDER,
        nm.EMBEDDING_ROW: np.arange(18), nm.CLASS: classes,
        nm.CLASS_SOURCE: [nm.MANUAL if c else None for c in classes]})
    return table, x


def _propagate(counted_only=None):
    table, x = cells()
    kwargs = {} if counted_only is None else {"counted_only": counted_only}
    return propagate_features(table, x, space=nm.EMBEDDING, k=1, method="knn", **kwargs)


def test_only_counted_cells_vote_and_get_classes_by_default():
    out = _propagate()
    assert out.loc[NEAR, nm.CLASS] == "A"  # the bordering "B" twin did not vote
    assert out.loc[BORDER, nm.CLASS] == "B"  # its manual label is kept
    assert out.loc[BORDER, nm.CLASS_SOURCE] == nm.MANUAL
    assert out.loc[WBC, nm.CLASS] is None and np.isnan(out.loc[WBC, nm.CONFIDENCE])
    assert (out.loc[:15, nm.CLASS] == ["A"] * 8 + ["B"] * 8).all()


def test_all_objects_switch_lets_every_object_vote_and_receive_a_class():
    out = _propagate(counted_only=False)
    assert out.loc[NEAR, nm.CLASS] == "B"  # exact twin of the labeled bordering object
    assert out.loc[WBC, nm.CLASS] == "A"


def test_labels_only_on_uncounted_objects_give_a_clear_error():
    table, x = cells()
    classes = np.array([None] * 18, dtype=object)
    classes[BORDER] = "B"
    with pytest.raises(ValueError, match="none of the 1 labeled object"):
        propagate(x, classes, counted=counted_rows(table))


def test_review_queue_holds_counted_cells_only():
    out = _propagate()
    out.loc[WBC, [nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE]] = ["A", nm.PROPAGATED, 0.01]
    assert WBC not in review_order(out)
    assert review_order(out, counted_only=False)[0] == WBC


def test_suggestions_skip_uncounted_objects():
    rng = np.random.default_rng(1)
    centers = np.eye(4, dtype=np.float32) * 10
    x = np.repeat(centers, [10, 10, 10, 5], axis=0) + rng.normal(0, 0.1, (35, 4))
    counted = np.arange(35) < 30  # the far fourth group: clumps
    assert (suggest_cells(x, 4) >= 30).any()  # without the mask a clump is suggested
    picks = suggest_cells(x, 4, counted=counted)
    assert len(picks) == 4 and (picks < 30).all()


def test_map_and_clusters_of_counted_cells_only():
    table, x = cells()
    rows = counted_rows(table)
    result = analyze(x, method="pca", counted=rows)
    assert np.isnan(result.coords[~rows]).all() and np.isfinite(result.coords[rows]).all()
    assert (result.clusters[~rows] == -1).all() and (result.clusters[rows] >= 0).all()
    assert (result.counted == rows).all()


def _adata():
    import anndata

    table, x = cells()
    table.index = table.index.astype(str)
    return anndata.AnnData(obs=table, obsm={nm.X_EMBEDDING: x})


def test_rd_tl_counts_counted_cells_by_default_and_switches_off():
    adata = _adata()
    tl.propagate(adata, use_rep=nm.X_EMBEDDING, k=1, method="knn")
    assert adata.obs[nm.CLASS].iloc[NEAR] == "A" and pd.isna(adata.obs[nm.CLASS].iloc[WBC])
    tl.project(adata, "pca", use_rep=nm.X_EMBEDDING)
    assert np.isnan(adata.obsm["X_pca"][[BORDER, WBC]]).all()
    tl.cluster(adata, use_rep=nm.X_EMBEDDING, n_clusters=2)
    assert (adata.obs[nm.CLUSTER].iloc[[BORDER, WBC]] == "-1").all()
    everything = _adata()
    tl.propagate(everything, use_rep=nm.X_EMBEDDING, k=1, method="knn", counted_only=False)
    assert everything.obs[nm.CLASS].iloc[NEAR] == "B"
    tl.project(everything, "pca", use_rep=nm.X_EMBEDDING, counted_only=False)
    assert np.isfinite(everything.obsm["X_pca"]).all()


def test_rd_tl_differential_is_the_core_s():
    adata = _adata()
    tl.propagate(adata, use_rep=nm.X_EMBEDDING, k=1, method="knn")
    got = tl.differential(adata)
    pd.testing.assert_frame_equal(got, diff_module.differential(adata.obs))
    target = got[(got["level"] == "subject") & (got[nm.CLASS] == "A")].iloc[0]
    assert (target["cells"], target["counted"]) == (8, 16)  # bordering and white cell left out


@pytest.mark.parametrize("func", [
    tl.propagate, tl.project, tl.cluster, tl.differential, diff_module.differential,
    iter_propagate_features, review_order, counted_rows])
def test_counted_only_defaults_equal_the_table(func):
    assert inspect.signature(func).parameters["counted_only"].default is DEFAULTS.counted_only


def test_iter_combine_and_report_default_to_counted_cells():
    from napari_reddino.runs.combine import iter_combine
    from napari_reddino.runs.report import iter_write_report

    for func in (iter_combine, iter_write_report):
        assert inspect.signature(func).parameters["counted_only"].default is DEFAULTS.counted_only


@pytest.mark.parametrize("command", ["project", "propagate", "differential", "report", "run"])
def test_cli_all_objects_switch(command):
    from napari_reddino.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    args = {"run": ["x.png", "--out", "o"]}.get(command, ["RUN"])
    assert sub.parse_args(args).counted_only is DEFAULTS.counted_only
    assert sub.parse_args([*args, "--all-objects"]).counted_only is False
