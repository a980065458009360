"""One table of defaults (``napari_reddino.defaults``): every entry point reads it.

Fails when a signature default of ``rd.tl`` or of a core function the CLI and the docks call,
a CLI default or choice list, or a default the docs state differs from the table. The docks'
initial values are checked with a real viewer in ``tests/widgets/test_dock_defaults.py``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from napari_reddino import names as nm
from napari_reddino import tl
from napari_reddino.defaults import DEFAULTS, Defaults, as_dict, why

DOCS = Path(__file__).parents[1] / "docs"


def _default(func, name: str):
    if dataclasses.is_dataclass(func):
        return {f.name: f.default for f in dataclasses.fields(func)}[name]
    return inspect.signature(func).parameters[name].default


def _iter_combine():
    try:  # runs/combine.py holds it now; older trees kept it in runs/distributed.py
        from napari_reddino.runs.combine import iter_combine
    except ImportError:
        from napari_reddino.runs.distributed import iter_combine
    return iter_combine


def _signatures():
    """(function, parameter, table entry) for every default the entry points repeat."""
    from napari_reddino.cli import commands, demo
    from napari_reddino.embed import grid, per_cell
    from napari_reddino.explore import (
        analysis,
        batch_effects,
        clusters,
        neighbors,
        projection,
        spaces,
    )
    from napari_reddino.label import propagate, suggest
    from napari_reddino.runs import embed_smear, pipeline, report
    from napari_reddino.segment import cellpose_backend, dispatch

    iter_combine = _iter_combine()
    return [
        (tl.segment, "method", "segment_method"),
        (tl.embed, "backbone", "backbone"), (tl.embed, "pooling", "pooling"),
        (tl.embed, "device", "device"),
        (tl.project, "method", "map_method"), (tl.project, "use_rep", "space"),
        (tl.cluster, "method", "cluster_method"), (tl.cluster, "use_rep", "space"),
        (tl.propagate, "use_rep", "space"), (tl.batch_metrics, "use_rep", "space"),
        # propagation: what rd.tl.propagate, the CLI and the labeling dock all call
        (propagate.iter_propagate, "k", "propagation_k"),
        (propagate.iter_propagate, "center", "center"),
        (propagate.iter_propagate, "spreading", "spreading"),
        (propagate.iter_propagate, "method", "propagation_method"),
        (propagate.iter_propagate, "metric", "metric"),
        (propagate.iter_propagate, "random_state", "random_state"),
        (propagate.iter_propagate_features, "space", "space"),
        (suggest.suggest_cells, "n", "n_suggestions"),
        # spaces, neighbor graph, map, clusters, batch metrics
        (spaces.space_matrix, "space", "space"),
        (spaces.space_matrix, "morphology_weight", "morphology_weight"),
        (spaces.combine, "morphology_weight", "morphology_weight"),
        *((analysis.Settings, name, name) for name in
          ("n_neighbors", "batch_k", "n_clusters", "metric", "pca_dims", "random_state")),
        (analysis.iter_map, "method", "map_method"),
        (analysis.iter_clusters, "method", "cluster_method"),
        (analysis.iter_analyze, "method", "map_method"),
        (neighbors.iter_feature_graph, "k", "batch_k"),
        (neighbors.iter_feature_graph, "metric", "metric"),
        (neighbors.iter_feature_graph, "pca_dims", "pca_dims"),
        (neighbors.neighbor_graph, "k", "n_neighbors"),
        (projection.iter_projection, "method", "map_method"),
        (projection.iter_projection, "graph_k", "batch_k"),
        (projection.iter_projection, "pca_dims", "pca_dims"),
        (projection.iter_projection, "random_state", "random_state"),
        (projection.project, "method", "map_method"),
        (clusters.cluster, "method", "cluster_method"),
        (clusters.kmeans, "n_clusters", "n_clusters"),
        (clusters.leiden, "n_neighbors", "n_neighbors"),
        (batch_effects.batch_metrics, "k", "batch_k"),
        # segmentation and embedding
        (dispatch.iter_segment, "method", "segment_method"),
        (dispatch.segment, "method", "segment_method"),
        (dispatch.iter_classical_segment, "exclude_border", "exclude_border"),
        (dispatch.classical_segment, "exclude_border", "exclude_border"),
        (cellpose_backend.cellpose_segment, "model", "cellpose_model"),
        (cellpose_backend.cellpose_segment, "flow_threshold", "flow_threshold"),
        (cellpose_backend.cellpose_segment, "cellprob_threshold", "cellprob_threshold"),
        (cellpose_backend.cellpose_segment, "exclude_border", "exclude_border"),
        (per_cell.iter_cell_embeddings, "pooling", "pooling"),
        (grid.iter_cell_embeddings, "pooling", "pooling"),
        (embed_smear.iter_embed_smear, "pooling", "pooling"),
        (embed_smear.iter_embed_smear, "method", "segment_method"),
        (embed_smear.cached_backbone, "device", "device"),
        # runs and the CLI's own entry points
        (pipeline.PipelineConfig, "method", "segment_method"),
        (pipeline.PipelineConfig, "pooling", "pooling"),
        (pipeline.PipelineConfig, "device", "device"),
        (iter_combine, "projection", "map_method"),
        (iter_combine, "n_clusters", "n_clusters"),
        (iter_combine, "random_state", "random_state"),
        (report.iter_write_report, "max_overlays", "max_overlays"),
        (commands.run_pipeline, "projection", "map_method"),
        (commands.run_pipeline, "clusters", "n_clusters"),
        (commands.run_pipeline, "features", "space"),
        (demo.populate_viewer, "pooling", "pooling"),
    ]


def test_every_entry_has_a_reason_and_the_table_is_frozen():
    assert set(as_dict()) == {f.name for f in dataclasses.fields(Defaults)}
    for name in as_dict():
        assert len(why(name)) > 20, name
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULTS.space = "embedding"  # type: ignore[misc]


def test_every_default_is_one_of_the_declared_choices():
    assert DEFAULTS.space in nm.FEATURE_SPACES
    assert DEFAULTS.map_method in nm.MAP_METHODS
    assert DEFAULTS.cluster_method in nm.CLUSTER_METHODS
    assert DEFAULTS.segment_method in nm.SEGMENT_METHODS
    assert DEFAULTS.pooling in nm.POOLINGS
    assert DEFAULTS.propagation_method in nm.PROPAGATION_METHODS
    assert DEFAULTS.device in nm.DEVICES


def test_the_core_checks_against_the_declared_choices():
    """The modules that validate a choice hold the same list as ``names`` (declared once)."""
    from napari_reddino.embed import backbones, per_cell
    from napari_reddino.explore import clusters, spaces
    from napari_reddino.label import propagate
    from napari_reddino.segment import dispatch

    assert tuple(dispatch.METHODS) == nm.SEGMENT_METHODS
    assert tuple(clusters.METHODS) == nm.CLUSTER_METHODS
    assert tuple(per_cell.POOLINGS) == nm.POOLINGS
    assert tuple(propagate.METHODS) == nm.PROPAGATION_METHODS
    assert tuple(spaces.SPACES) == nm.FEATURE_SPACES
    assert DEFAULTS.space == spaces.DEFAULT_SPACE
    assert DEFAULTS.backbone == backbones.DEFAULT_BACKBONE


@pytest.mark.parametrize(("func", "param", "entry"), _signatures(),
                         ids=lambda v: getattr(v, "__qualname__", str(v)))
def test_signature_defaults_equal_the_table(func, param, entry):
    assert _default(func, param) == getattr(DEFAULTS, entry), (
        f"{func.__module__}.{func.__qualname__}({param}=...) disagrees with DEFAULTS.{entry}")


def test_iter_combine_space_is_the_table_s():
    """``features=None`` means the table's space (with the fallback for old tables)."""
    assert _default(_iter_combine(), "features") in (None, DEFAULTS.space)


# -- the command line -------------------------------------------------------------------------
def _subparsers():
    from napari_reddino.cli.main import build_parser

    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return action.choices


CLI_DEFAULTS = {  # subcommand -> {dest: table entry}
    "segment": {"method": "segment_method"},
    "embed": {"method": "segment_method", "pooling": "pooling", "device": "device"},
    "project": {"features": "space", "projection": "map_method", "clusters": "n_clusters"},
    "propagate": {"k": "propagation_k", "spreading": "spreading", "features": "space",
                  "classifier": "propagation_method", "center": "center"},
    "report": {"max_overlays": "max_overlays"},
    "run": {"method": "segment_method", "pooling": "pooling", "device": "device",
            "features": "space", "projection": "map_method", "clusters": "n_clusters"},
}
CLI_CHOICES = {"method": nm.SEGMENT_METHODS, "pooling": nm.POOLINGS,
               "features": nm.FEATURE_SPACES, "projection": nm.MAP_METHODS,
               "classifier": nm.PROPAGATION_METHODS}


@pytest.mark.parametrize("command", sorted(CLI_DEFAULTS))
def test_cli_defaults_and_choices_equal_the_table(command):
    sub = _subparsers()[command]
    for dest, entry in CLI_DEFAULTS[command].items():
        assert sub.get_default(dest) == getattr(DEFAULTS, entry), f"{command} --{dest}"
    for action in sub._actions:
        if action.dest in CLI_CHOICES and action.choices is not None:
            assert tuple(action.choices) == CLI_CHOICES[action.dest], f"{command} --{action.dest}"
    if command in ("embed", "run"):  # no --backbone: the table's, resolved in the command
        assert sub.get_default("backbone") is None


def test_cli_without_backbone_uses_the_table_s(capsys):
    from napari_reddino.cli.commands import _config
    from napari_reddino.cli.main import build_parser

    args = build_parser().parse_args(["embed", "x.png", "--out", "o"])
    config = _config(args)
    assert (config.backbone, config.method, config.pooling, config.device) == (
        DEFAULTS.backbone, DEFAULTS.segment_method, DEFAULTS.pooling, DEFAULTS.device)


# -- the docs ---------------------------------------------------------------------------------
CLI_DOC_ROWS = {"--features": "space", "--projection": "map_method", "--clusters": "n_clusters",
                "--method": "segment_method", "--pooling": "pooling", "--device": "device",
                "--k": "propagation_k", "--classifier": "propagation_method",
                "--center / --no-center": "center", "--spreading": "spreading",
                "--max-overlays": "max_overlays", "--backbone": "backbone"}


def _shown(value) -> str:
    return {True: "on", False: "off"}.get(value, str(value)) if isinstance(value, bool) \
        else str(value)


def test_docs_cli_states_the_table_s_defaults():
    text = (DOCS / "cli.md").read_text()
    rows = dict(re.findall(r"^\| `([^`]+)` \| `([^`]+)` \|", text, flags=re.M))
    for option, entry in CLI_DOC_ROWS.items():
        assert rows.get(option) == _shown(getattr(DEFAULTS, entry)), option


def test_user_guide_states_the_table_s_defaults():
    text = " ".join((DOCS / "user_guide.md").read_text().split())
    assert f"**Neighbors (k)** ({DEFAULTS.n_neighbors})" in text
    assert f"*{DEFAULTS.space}* (default)" in text
    assert f"*k-means* (k, {DEFAULTS.n_clusters} by default)" in text
    assert f"**Neighbors k** ({DEFAULTS.propagation_k})" in text
    assert f"({_shown(DEFAULTS.center)} by default)" in text
    assert f"*{DEFAULTS.propagation_method}* (the default" in text
    assert f"({_shown(DEFAULTS.exclude_border)} by default" in text
