"""One table of the plugin's defaults, read by ``rd.tl``, the CLI parser, the docks and the docs.

Why one table (as scanpy's ``sc.settings``): each entry point kept its own copy and they drifted
apart (the feature space was morphology in the CLI and the docks but the embedding in ``rd.tl``;
centering was on in the CLI and the dock but off in ``rd.tl``), so the same cells got different
classes depending on where the user pressed the button. ``tests/test_defaults.py`` fails when a
signature default, a CLI default or a dock's initial value differs from :data:`DEFAULTS`.

Each entry says why it has its value (``why("space")``). The choices they pick from (spaces,
map, cluster and segmentation methods, poolings, classifiers) are declared once in
:mod:`napari_reddino.names`. This module imports nothing of the package: it sits in the bottom
layer beside ``names``, independent of it (the import-linter contract), so its values are plain
strings and the test checks that each is one of the choices.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def _entry(value, why: str):
    return field(default=value, metadata={"why": why})


@dataclass(frozen=True)
class Defaults:
    """The defaults every entry point shares; read them as ``DEFAULTS.space`` etc."""

    # -- the space cells are compared in (map, clusters, batch metrics, propagation) -----------
    space: str = _entry("morphology", "measured best on 8,300 labeled real cells (Chula "
                        "RBC-12): linear probe 85.1 / 20-NN 81.2 weighted F1 against 64.2 / 54.8 "
                        "for the bundled embedding; older tables without morph_* columns fall "
                        "back to the embedding")
    morphology_weight: float = _entry(0.5, "share of the variance the morphology block carries "
                                      "in 'both': neither block drowns the other")
    # -- neighbor graph, map and clusters (explore.analysis.Settings) --------------------------
    n_neighbors: int = _entry(15, "UMAP's, Leiden's and label spreading's neighborhood: "
                              "umap-learn's default")
    batch_k: int = _entry(30, "the batch metrics' neighborhood (kBET / iLISI need more "
                          "neighbors than a map); the shared neighbor graph holds this many")
    metric: str = _entry("cosine", "the backbones are trained with cosine similarities")
    pca_dims: int = _entry(50, "neighbors are searched on at most 50 PCA dimensions (as "
                           "scanpy does): fast on wide embeddings")
    random_state: int = _entry(0, "the same cells give the same map and clusters every time")
    map_method: str = _entry("umap", "keeps local neighborhoods, which is what a user "
                             "lassos; pca and tsne on request")
    cluster_method: str = _entry("kmeans", "needs no optional package and gives the number "
                                 "of groups asked for")
    n_clusters: int = _entry(8, "a handful of groups to start from, as the CLI and the dock "
                         "always used")
    # -- segmentation --------------------------------------------------------------------------
    segment_method: str = _entry("classical", "fast on a CPU and needs no downloaded weights")
    exclude_border: bool = _entry(False, "cells cut by the border are kept and flagged "
                                  "(touches_border), so nothing is lost that a user may want")
    counted_only: bool = _entry(True, "counts, propagation, review, suggestions, the map and "
                                "exports are about intact red cells: objects cut by the "
                                "border, white cells, platelets, debris, marks and clumps stay "
                                "on screen but do not count (segment.counted)")
    max_area_ratio: float = _entry(3.0, "an object over 3x its smear's median red cell is "
                                   "merged cells or a clump, not one cell")
    cellpose_model: str = _entry("cpsam", "Cellpose 4's general model")
    flow_threshold: float = _entry(0.4, "Cellpose's own default")
    cellprob_threshold: float = _entry(0.0, "Cellpose's own default")
    # -- embedding -----------------------------------------------------------------------------
    backbone: str = _entry("reddino-tiny", "bundled with the plugin: works offline on a CPU")
    pooling: str = _entry("cls_crop", "the CLS token of a crop around the cell: the backbone "
                          "sees the cell as it was trained to")
    device: str = _entry("auto", "CUDA or MPS when present, else the CPU")
    # -- label propagation ---------------------------------------------------------------------
    propagation_k: int = _entry(15, "labeled neighbors that vote: enough to outvote one "
                                "mislabeled cell, few enough for rare classes")
    propagation_method: str = _entry("auto", "k-NN votes or a logistic regression, whichever "
                                     "cross-validates better on the labeled cells")
    center: bool = _entry(True, "cosine around the mean cell: ViT embeddings share one large "
                          "common direction and separate far better; standardized morphology "
                          "is near-centered already, so it changes little there")
    spreading: bool = _entry(False, "plain votes are faster and easier to explain; spreading "
                             "on request")
    n_suggestions: int = _entry(12, "about one or two cells per class of the default set")
    # -- report --------------------------------------------------------------------------------
    max_overlays: int = _entry(12, "PCA overlay figures: enough to see, small enough to open")


DEFAULTS = Defaults()


def why(name: str) -> str:
    """The reason behind a default (``why("center")``)."""
    for entry in fields(Defaults):
        if entry.name == name:
            return entry.metadata["why"]
    raise KeyError(f"no default named {name!r}")


def as_dict() -> dict:
    """``{name: value}`` of every default (for docs and tests)."""
    return {entry.name: getattr(DEFAULTS, entry.name) for entry in fields(Defaults)}
