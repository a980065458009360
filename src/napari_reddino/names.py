"""One name for each thing: cell-table columns, layer metadata keys, feature spaces, map columns
and the other choices (methods, poolings), whose defaults are in :mod:`napari_reddino.defaults`.

Every module spells these through here, so a column cannot mean two things in two files and a
rename is one edit. A leaf module: it imports nothing of the package (and nothing heavy).

Map coordinates are named after the method that made them, scanpy style: a 2-D map by
``method`` lives in the cell table as ``{method}_0`` / ``{method}_1`` and in AnnData as
``.obsm["X_{method}"]`` (``X_umap``, ``X_pca``, ``X_tsne``). Older tables (and the explorer and
``napari-reddino project`` today) keep any map in ``umap_0`` / ``umap_1``; readers find a map with
:func:`find_map`, which accepts both.
"""

from __future__ import annotations

from collections.abc import Iterable

# -- cell table columns (one row per segmented cell, keyed by (image, label)) -----------------
LABEL = "label"
IMAGE = "image"
SUBJECT = "subject"
CENTROID_Y = "centroid_y"
CENTROID_X = "centroid_x"
AREA = "area"
PERIMETER = "perimeter"
ECCENTRICITY = "eccentricity"
SOLIDITY = "solidity"
MEAN_RGB = ("mean_r", "mean_g", "mean_b")
KIND = "kind"  # what the segmenter thinks the object is (rbc, wbc, platelet, clump...)
TOUCHES_BORDER = "touches_border"
EMBEDDING_ROW = "embedding_row"  # row of the cell's vector in the embeddings matrix
CLUSTER = "cluster"
CLASS = "class"  # the user's (or propagated) class name
CLASS_SOURCE = "class_source"  # MANUAL or PROPAGATED
CONFIDENCE = "confidence"
COUNTED = "counted"  # an intact, plausible red cell that counts (segment.counted)
NOT_COUNTED_REASON = "not_counted_reason"  # "" for counted cells, else why not, in words
EXCLUDED = "excluded"  # the user excluded this object from counts by hand
EDITED = "edited"  # the cell's outline was corrected by hand (runs.corrections)
NEEDS_REVIEW = "needs_review"  # its class was given before its outline changed a lot
IMAGE_SHA256 = "image_sha256"  # content hash of the smear's image file, where known
#: napari's own ``features`` column: row -> label value, added by napari on Labels layers.
NAPARI_INDEX = "index"

#: values of ``class_source``
MANUAL = "manual"
PROPAGATED = "propagated"
PREDICTED = "predicted"  # by a reference model (label.reference), for the user to correct

#: columns a reference model writes beside class / class_source / confidence (label.annotate)
PREDICTED_CLASS = "predicted_class"  # its best guess, also where it leaves the cell unassigned
ASSIGNED = "assigned"  # the guess is sure enough to be the cell's class
UNASSIGNED_REASON = "unassigned_reason"  # "" when assigned, else why not, in words

#: Columns whose values repeat a few times (categoricals in AnnData and pandas).
CATEGORICAL_COLUMNS = (IMAGE, SUBJECT, CLASS, CLASS_SOURCE, KIND)

# -- layer metadata keys ----------------------------------------------------------------------
#: Labels layer: the ``cells.CellEmbeddings`` that ``features[EMBEDDING_ROW]`` points into.
EMBEDDINGS_KEY = "reddino_embeddings"
META_IMAGE = "image"  # the image name that keys the cells (a file name)
META_SUBJECT = "subject"
META_IMAGE_LAYER = "image_layer"  # name of the Image layer a Labels layer was segmented from
META_METHOD = "method"  # segmentation backend
META_BACKBONE = "backbone"
META_CORRECTED = "corrected_by_hand"  # its labels differ from what the segmenter made
META_RUN = "reddino_run"  # run folder a layer was read from

# -- feature spaces (what the explorer, propagation and the CLI measure distances in) ---------
EMBEDDING = "embedding"
MORPHOLOGY = "morphology"
BOTH = "both"
FEATURE_SPACES = (EMBEDDING, MORPHOLOGY, BOTH)

# -- 2-D maps -----------------------------------------------------------------------------------
UMAP_METHOD = "umap"
PCA_METHOD = "pca"
TSNE_METHOD = "tsne"
MAP_METHODS = (UMAP_METHOD, PCA_METHOD, TSNE_METHOD)

# -- the other choices (argparse ``choices=``, the docks' lists and the core's checks) ---------
SEGMENT_METHODS = ("classical", "cellpose")
CLUSTER_METHODS = ("kmeans", "hdbscan", "leiden")
POOLINGS = ("cls_crop", "patch_mean")  # per-cell vector: CLS of a crop, or mean patch tokens
PROPAGATION_METHODS = ("auto", "knn", "logreg")  # auto: whichever cross-validates better
DEVICES = ("auto", "cpu", "cuda", "mps")  # the CLI also takes cuda:N


def map_columns(method: str) -> tuple[str, str]:
    """The two cell-table columns of a 2-D map made by ``method`` (``("pca_0", "pca_1")``)."""
    return f"{method}_0", f"{method}_1"


#: The legacy columns that hold whatever map was last made (explorer, ``project``).
UMAP = map_columns(UMAP_METHOD)


def obsm_key(name: str) -> str:
    """AnnData ``.obsm`` key of a matrix, scanpy style: ``"umap"`` -> ``"X_umap"``."""
    return name if name.startswith("X_") else f"X_{name}"


def find_map(columns: Iterable[str], prefer: str | None = None) -> tuple[str, tuple[str, str]]:
    """``(method, columns)`` of a 2-D map present in ``columns``; ``prefer`` first, then umap,
    pca, tsne. ``("", ())`` when there is none."""
    present = set(columns)
    order = [prefer] if prefer else []
    for method in [*order, *MAP_METHODS]:
        cols = map_columns(method)
        if set(cols) <= present:
            return method, cols
    return "", ()


# -- AnnData keys -------------------------------------------------------------------------------
X_EMBEDDING = obsm_key(EMBEDDING)
X_MORPHOLOGY = obsm_key(MORPHOLOGY)  # the standardized morphology (raw values are .X)
OBSM_SPATIAL = "spatial"  # squidpy's key: centroid (x, y) in pixels of the cell's smear
UNS_REDDINO = "reddino"  # how the stored space, neighbors, map and clusters were made
UNS_MORPHOLOGY_FEATURES = "morphology_features"
UNS_BACKBONE = "backbone"
UNS_POOLING = "pooling"
UNS_CLASS_COLORS = "class_colors"  # scanpy reads "<column>_colors" for a categorical column
UNS_PROJECTION = "projection"

# -- files of a run folder (``napari-reddino run --out RUN``) -----------------------------------
CELLS_TABLE_FILE = "cells.parquet"
EMBEDDINGS_FILE = "embeddings.npz"
ANNDATA_FILE = "cells.h5ad"
SUMMARY_FILE = "summary.json"
DONE_MARKER = "_SUCCESS"  # a smear folder is finished once this is written (last)
GRID_FILE = "grid.zarr"  # a smear folder's patch grid and labels
# the id of one writing of a run's cells, in each file written with it (parquet schema metadata,
# .npz array, .uns key): files carrying different ids were not written together
RUN_STAMP = "reddino_run_stamp"
