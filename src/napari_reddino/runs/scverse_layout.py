"""The parts of ``cells.h5ad`` that make it a scanpy object without conversion.

scanpy reads what ``.X``, ``.var``, categorical ``.obs`` columns with ``<column>_colors`` and
``.obsm`` keys hold: ``sc.tl.rank_genes_groups(adata, "cluster")`` ranks ``.X``'s variables,
``sc.pl.umap(color="cluster")`` wants a categorical and its colors, squidpy finds positions in
``obsm["spatial"]``. So ``.X`` holds the morphology features (one column per measure, its unit,
family and definition in ``.var``), ``obsm["X_morphology"]`` their standardized form (the one
every neighbor graph, map and cluster here is computed on), and ``uns["reddino"]`` how each stored
result was made, as scanpy keeps ``uns["neighbors"]["params"]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_reddino import names as nm

#: region-table columns that a morphology feature measures again: ``.X`` keeps one of each
REGION_DUPLICATES = {nm.AREA: "area", nm.PERIMETER: "perimeter",
                     nm.ECCENTRICITY: "eccentricity", nm.SOLIDITY: "solidity",
                     **{column: column for column in nm.MEAN_RGB}}
#: ``obs`` columns that get ``uns["<column>_colors"]`` when they are categorical
COLORED = (nm.CLUSTER, nm.CLASS, nm.SUBJECT, nm.IMAGE, nm.KIND)
#: what ``obsm["spatial"]`` is measured in (centroid x, y of the cell in its smear)
SPATIAL_UNIT = "pixels of the smear image (x, y); each cell's own smear: group by obs['image']"


def feature_var(columns: Sequence[str]) -> pd.DataFrame:
    """``.var`` of the morphology columns: index = feature name, columns unit/family/description."""
    from napari_reddino.morphology.features import BY_NAME, COLUMN_PREFIX

    rows = []
    for column in columns:
        name = column.removeprefix(COLUMN_PREFIX)
        feature = BY_NAME.get(name)
        rows.append({"unit": feature.unit if feature else "",
                     "family": feature.family if feature else "",
                     "description": feature.definition if feature else column})
    index = pd.Index([c.removeprefix(COLUMN_PREFIX) for c in columns], dtype=str)
    return pd.DataFrame(rows, index=index, columns=["unit", "family", "description"])


def feature_columns_of(var_names: Sequence[str]) -> list[str]:
    """Cell-table column names (``morph_<name>``) of ``.X``'s variables."""
    from napari_reddino.morphology.features import COLUMN_PREFIX

    return [name if name.startswith(COLUMN_PREFIX) else COLUMN_PREFIX + name
            for name in var_names]


def standardized(values: np.ndarray) -> np.ndarray:
    """The standardized morphology the project computes with (``explore.spaces.standardize``)."""
    from napari_reddino.explore.spaces import standardize

    return standardize(values)


def categorical_cluster(obs: pd.DataFrame) -> None:
    """``obs["cluster"]`` as an ordered-by-number categorical of strings, as scanpy's leiden."""
    if nm.CLUSTER not in obs.columns or isinstance(obs[nm.CLUSTER].dtype, pd.CategoricalDtype):
        return
    values = pd.to_numeric(obs[nm.CLUSTER], errors="coerce")
    numbers = sorted(int(v) for v in values.dropna().unique())
    text = [None if pd.isna(v) else str(int(v)) for v in values]
    obs[nm.CLUSTER] = pd.Categorical(text, categories=[str(n) for n in numbers])


def category_colors(obs: pd.DataFrame) -> dict[str, list[str]]:
    """``{"<column>_colors": [...]}`` for the colored categoricals: the docks' palettes.

    Classes of a known class set keep their set's colors (as in the labeling dock); other
    columns take the explorer's palette in category order.
    """
    from napari_reddino.label.classes import CLASS_SETS, default_colors

    colors: dict[str, list[str]] = {}
    for column in COLORED:
        if column not in obs.columns or not isinstance(obs[column].dtype, pd.CategoricalDtype):
            continue
        categories = [str(c) for c in obs[column].cat.categories]
        if not categories:
            continue
        palette = default_colors(len(categories))
        if column == nm.CLASS:
            for class_set in CLASS_SETS.values():
                if all(c in class_set for c in categories):
                    palette = [class_set.color_of(c) for c in categories]
                    break
        colors[f"{column}_colors"] = palette
    return colors


def spatial(table: pd.DataFrame) -> np.ndarray | None:
    """(N, 2) float32 ``x, y`` centroids, squidpy's ``obsm["spatial"]`` order."""
    if not {nm.CENTROID_X, nm.CENTROID_Y} <= set(table.columns):
        return None
    return table[[nm.CENTROID_X, nm.CENTROID_Y]].to_numpy(dtype=np.float32)


def provenance(summary: dict, *, backbone: str, pooling: str, weights: str = "") -> dict:
    """``uns["reddino"]``: how the stored map, clusters and spaces were made (h5ad-writable)."""
    from napari_reddino import __version__
    from napari_reddino.defaults import DEFAULTS

    space = str(summary.get("feature_space", ""))
    out = {
        "version": __version__,
        "space": space,
        "morphology_key": nm.X_MORPHOLOGY,
        "standardization": "robust z-score per feature (median, 1.4826 MAD), 3 tanh(z / 3)",
        "backbone": {"name": str(backbone), "pooling": str(pooling),
                     "weights": str(weights)},  # embed.backbones.weights_identity
        "neighbors": {"n_neighbors": int(summary.get("n_neighbors", DEFAULTS.n_neighbors)),
                      "metric": str(summary.get("metric", DEFAULTS.metric)),
                      "use_rep": nm.X_MORPHOLOGY if space == nm.MORPHOLOGY else space},
        "map": {"method": str(summary.get("projection", "")),
                "random_state": int(summary.get("random_state", DEFAULTS.random_state))},
        "clusters": {"method": str(summary.get("cluster_method", DEFAULTS.cluster_method)),
                     "n_clusters": int(summary.get("n_clusters", 0) or 0)},
        "spatial_unit": SPATIAL_UNIT,
    }
    return out
