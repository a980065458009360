"""The public API in scanpy's manner: ``import napari_reddino as rd; rd.tl.project(adata)``.

Why a ``tl`` namespace (as scanpy's ``sc.tl``) and not ``rd.project``: ``segment``, ``embed``,
``project``, ``cluster``, ``propagate`` and ``morphology`` are also the package's modules, and
Python binds an imported submodule over a package attribute of the same name.

Functions taking ``data`` accept an AnnData (as :func:`napari_reddino.read_run` returns, see
:mod:`napari_reddino.runs.anndata_io`) or a plain (N, D) matrix. With an AnnData they read the
representation ``use_rep``: a feature space (``"embedding"``, ``"morphology"``, ``"both"``),
made from the AnnData exactly as the CLI and the docks make it
(:func:`napari_reddino.explore.spaces.space_matrix`), or any ``.obsm`` key (``"X_embedding"``,
``"X_pca"``...). The default is the plugin's default space (standardized morphology, see
:mod:`napari_reddino.defaults`), so ``rd.tl``, ``napari-reddino`` and the docks agree on the
same cells. Results go under documented keys and ``None`` is returned, like scanpy; with a
matrix they return the result.

- :func:`project` -> ``.obsm["X_<method>"]`` (``X_umap``, ``X_pca``, ``X_tsne``)
- :func:`cluster` -> ``.obs["cluster"]`` (categorical)
- :func:`propagate` -> ``.obs["class"]``, ``.obs["class_source"]``, ``.obs["confidence"]``
- :func:`batch_metrics` -> ``.uns["batch_metrics"]`` (summary) and the report returned
- :func:`differential` -> a table: % of the counted red cells per class, 95 % interval, grade
- :func:`annotate` -> ``.obs["class"]`` etc. from a reference model (cells arrive classified)

With an AnnData, ``counted_only`` (default ``DEFAULTS.counted_only``) keeps map, clusters and
propagation to the counted cells (:mod:`napari_reddino.segment.counted`): the other objects get
NaN coordinates, cluster ``"-1"`` and no propagated class (their manual labels are kept).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS


def _is_anndata(data) -> bool:
    return hasattr(data, "obsm") and hasattr(data, "obs")


def _rep(data, use_rep: str) -> np.ndarray:
    """The (N, D) matrix of ``use_rep``: a feature space (the default one falls back to the
    embedding when the cells have no morphology, as in the CLI) or an ``.obsm`` key."""
    if not _is_anndata(data):
        return np.asarray(data, dtype=np.float32)
    if use_rep in nm.FEATURE_SPACES:
        from napari_reddino.explore.spaces import resolve_space, space_matrix
        from napari_reddino.runs.anndata_io import obs_with_features

        vectors = data.obsm.get(nm.X_EMBEDDING)
        cells = obs_with_features(data)  # the morphology lives in .X
        space = resolve_space(use_rep, cells, vectors)
        return space_matrix(cells, vectors, space, row_column=None)
    if use_rep not in data.obsm:
        raise KeyError(f"no .obsm[{use_rep!r}] and not a feature space {nm.FEATURE_SPACES}; "
                       f".obsm has {list(data.obsm)}")
    return np.asarray(data.obsm[use_rep], dtype=np.float32)


def segment(image, method: str = DEFAULTS.segment_method, **params):
    """Segment a smear: a ``SegmentationResult`` (``labels`` (H, W), ``features`` cell table)."""
    from napari_reddino.segment.dispatch import segment as _segment

    return _segment(image, method, **params)


def embed(image, labels, *, backbone: str | None = DEFAULTS.backbone,
          pooling: str = DEFAULTS.pooling, image_name: str = "image",
          device: str = DEFAULTS.device):
    """One backbone vector per labeled cell: a ``cells.CellEmbeddings`` keyed by label."""
    from napari_reddino.embed.backbones import DEFAULT_BACKBONE
    from napari_reddino.embed.grid import cell_embeddings
    from napari_reddino.runs.pipeline import cached_backbone

    model = cached_backbone(backbone or DEFAULT_BACKBONE, device)
    return cell_embeddings(image, labels, model, pooling=pooling, image_name=image_name)


def morphology(labels, image, *, pixel_size: float | None = None) -> pd.DataFrame:
    """Interpretable morphology per cell, columns named as in the cell table (``morph_*``)."""
    from napari_reddino.morphology import features as _morphology

    return _morphology.morphology_features(labels, image, pixel_size=pixel_size,
                                           prefix=_morphology.COLUMN_PREFIX)


def _counted(data, counted_only: bool) -> np.ndarray | None:
    """The AnnData's counted rows (None: every row takes part, or a plain matrix)."""
    if not _is_anndata(data) or not counted_only:
        return None
    from napari_reddino.label.counting import counted_rows
    from napari_reddino.runs.anndata_io import obs_with_features

    rows = counted_rows(obs_with_features(data), counted_only)  # sizes live in .X
    return None if rows.all() else rows


def project(data, method: str = DEFAULTS.map_method, *, use_rep: str = DEFAULTS.space,
            counted_only: bool = DEFAULTS.counted_only, **kwargs):
    """2-D map of the cells (umap-learn / scikit-learn); ``.obsm["X_<method>"]``."""
    from napari_reddino.explore.analysis import on_rows
    from napari_reddino.explore.projection import project as _project

    rows, x = _counted(data, counted_only), _rep(data, use_rep)
    coords = _project(x if rows is None else x[rows], method=method, **kwargs)
    if not _is_anndata(data):
        return coords
    coords = coords if rows is None else on_rows(coords, rows, np.nan)
    data.obsm[nm.obsm_key(method)] = np.asarray(coords, dtype=np.float32)
    return None


def cluster(data, method: str = DEFAULTS.cluster_method, *, use_rep: str = DEFAULTS.space,
            key_added: str = nm.CLUSTER, counted_only: bool = DEFAULTS.counted_only, **params):
    """Cluster ids of the cells (k-means, HDBSCAN or Leiden); ``.obs["cluster"]``."""
    from napari_reddino.explore.analysis import on_rows
    from napari_reddino.explore.clusters import cluster as _cluster

    rows, x = _counted(data, counted_only), _rep(data, use_rep)
    ids = _cluster(x if rows is None else x[rows], method=method, **params)
    if not _is_anndata(data):
        return ids
    ids = ids if rows is None else on_rows(ids, rows, -1)
    data.obs[key_added] = pd.Categorical(np.asarray(ids).astype(str))
    return None


def propagate(data, classes=None, *, use_rep: str = DEFAULTS.space, key: str = nm.CLASS,
              counted_only: bool = DEFAULTS.counted_only, **kwargs):
    """Classes for every cell from the labeled ones (see ``label.propagate.iter_propagate``,
    whose defaults the CLI and the labeling dock share: k, centering, classifier).

    With an AnnData the labeled cells are those with a value in ``.obs[key]`` (for ``"class"``
    only the ``class_source == "manual"`` ones once a propagation has run, as in the dock and
    the CLI); the result goes to ``.obs[key]``, ``.obs["class_source"]`` and
    ``.obs["confidence"]`` and is returned too. Only counted cells vote and get classes unless
    ``counted_only`` is off (a matrix: pass ``counted=`` a bool mask to the same effect).
    """
    from napari_reddino.label.propagate import propagate as _propagate
    from napari_reddino.label.propagate import voting_classes

    if _is_anndata(data) and classes is None:
        if key not in data.obs:
            raise KeyError(f"no .obs[{key!r}] with labeled cells")
        classes = voting_classes(data.obs, key)
    kwargs.setdefault("counted", _counted(data, counted_only))
    result = _propagate(_rep(data, use_rep), classes, **kwargs)
    if _is_anndata(data):  # None (not counted, unlabeled) stays missing, not "None"
        data.obs[key] = pd.Categorical(result.classes.astype(object))
        data.obs[nm.CLASS_SOURCE] = pd.Categorical(result.source.astype(object))
        data.obs[nm.CONFIDENCE] = np.asarray(result.confidence, dtype=np.float32)
    return result


def batch_metrics(data, subjects=None, classes=None, *, use_rep: str = DEFAULTS.space,
                  batch_key: str = nm.SUBJECT, label_key: str | None = None, **kwargs):
    """Batch-effect metrics across subjects (silhouette, iLISI, ...); ``.uns["batch_metrics"]``."""
    from napari_reddino.explore.batch_effects import batch_metrics as _batch_metrics

    if _is_anndata(data):
        subjects = data.obs[batch_key].astype(str).to_numpy() if subjects is None else subjects
        if classes is None and label_key is not None:
            column = data.obs[label_key]
            classes = column.astype(object).where(column.notna(), None).to_numpy()
    if subjects is None:
        raise ValueError("pass subjects (one per cell) or an AnnData with .obs['subject']")
    report = _batch_metrics(_rep(data, use_rep), np.asarray(subjects), classes, **kwargs)
    if _is_anndata(data):
        data.uns["batch_metrics"] = {k: v for k, v in dict(report.summary).items()
                                     if isinstance(v, (int, float, str, np.generic))}
    return report


def differential(data, *, counted_only: bool = DEFAULTS.counted_only, key: str = nm.CLASS,
                 grades=None) -> pd.DataFrame:
    """Counts, % and 95 % Wilson intervals of the counted red cells per class, per subject and
    per smear, with ICSH 2015 grades (``label.differential.differential``; ``grades``: an
    edited copy of its table). ``data``: an AnnData (its ``.obs``) or a cell table."""
    from napari_reddino.label.differential import differential as _differential

    table = data.obs if _is_anndata(data) else data
    return _differential(table, counted_only=counted_only, grades=grades, class_key=key)


def annotate(data, model=None, *, counted_only: bool = DEFAULTS.counted_only,
             vote_clusters: bool = False) -> pd.DataFrame:
    """Classes of every counted cell from a reference model (``label.annotate``): the bundled
    ``reference-rbc12`` when ``model`` is None, else a saved model's folder, a bundled name or
    a ``ReferenceModel``. Manual labels are kept; predicted cells get ``class_source``
    "predicted" and their calibrated probability in ``confidence``; unsure or unfamiliar cells
    stay unassigned (``predicted_class``, ``assigned``, ``unassigned_reason`` say why).

    ``data``: an AnnData (its ``.obs`` gets the columns) or a cell table (with ``morph_*``
    columns); the annotated table is returned either way."""
    from napari_reddino.label.annotate import annotate_table

    if not _is_anndata(data):
        return annotate_table(data, model, counted_only=counted_only,
                              vote_clusters=vote_clusters)
    from napari_reddino.runs.anndata_io import obs_with_features

    out = annotate_table(obs_with_features(data), model, counted_only=counted_only,
                         vote_clusters=vote_clusters)
    for column in (nm.CLASS, nm.CLASS_SOURCE, nm.PREDICTED_CLASS):
        data.obs[column] = pd.Categorical(out[column].to_numpy(dtype=object))
    data.obs[nm.CONFIDENCE] = out[nm.CONFIDENCE].to_numpy(np.float32)
    data.obs[nm.ASSIGNED] = out[nm.ASSIGNED].to_numpy(bool)
    data.obs[nm.UNASSIGNED_REASON] = out[nm.UNASSIGNED_REASON].astype(str).to_numpy()
    return out
