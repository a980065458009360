"""Cell segmentation of smears: input checking, a classical RBC backend, and the shared entry point.

The classical backend needs no weights (the steps and why: ``segment.classical``). Large smears
run tile by tile (bounded memory, one progress unit per tile). The cellpose backend lives in
``segment.cellpose_backend`` and shares :func:`iter_segment`, which measures the cells, adds each
object's ``kind`` and ``touches_border`` and checks the result is plausible (``segment.check``).
"""

from __future__ import annotations

import inspect
import threading

import numpy as np
from scipy import ndimage
from skimage.segmentation import clear_border, relabel_sequential

from napari_reddino import names as nm
from napari_reddino.io.cell_table import region_features
from napari_reddino.io.image_checks import InputError, is_lazy, validate_image
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from napari_reddino.segment.cellpose_backend import WeightsNotFoundError, cellpose_segment
from napari_reddino.segment.check import (
    SegmentationResult,
    add_object_columns,
    plausibility_warning,
)
from napari_reddino.segment.classical import estimate_cell_radius, segment_tile, stain_density
from napari_reddino.segment.kind import object_kinds, separate_white_cells
from napari_reddino.segment.tiled import TILE, check_segment_params, iter_tiled_segment, tiles

__all__ = [
    "METHODS",
    "InputError",
    "SegmentationResult",
    "WeightsNotFoundError",
    "cellpose_segment",
    "classical_segment",
    "estimate_cell_radius",
    "iter_classical_segment",
    "iter_segment",
    "segment",
    "stain_density",
    "validate_image",
]

METHODS = nm.SEGMENT_METHODS


def iter_classical_segment(
    image,
    *,
    min_area: float | None = None,
    max_area: float | None = None,
    exclude_border: bool = False,
    cell_radius: float | None = None,
    tile: int = TILE,
    cancel: threading.Event | None = None,
) -> ProgressGen[np.ndarray]:
    """Classical RBC segmentation, tile by tile; yields Progress per tile, returns int32 labels.

    ``cell_radius`` (pixels) is estimated from the first tile when None; ``min_area`` and
    ``max_area`` default to 0.1x and 8x the area of a cell of that radius. Cells cut by the
    image border are kept (the cell table flags them, ``touches_border``) unless
    ``exclude_border``.
    """
    if is_lazy(image):  # dask, zarr, memmap: never loaded whole (segment.tiled)
        result = yield from iter_tiled_segment(
            image, min_area=min_area, max_area=max_area, exclude_border=exclude_border,
            cell_radius=cell_radius, tile=tile, cancel=cancel)
        return result.labels
    rgb = validate_image(image)
    check_segment_params(min_area, max_area, tile)
    height, width = rgb.shape[:2]
    tiles_ = list(tiles(height, width, int(tile)))
    labels = np.zeros((height, width), np.int32)
    radius = cell_radius
    next_label = 1
    for done, (y0, x0, y1, x1) in enumerate(tiles_):
        check_cancel(cancel)
        yield Progress(done, len(tiles_), f"segmenting tile {done + 1}/{len(tiles_)}")
        halo = 0 if len(tiles_) == 1 else int(6 * (radius or 30))
        ya, xa = max(0, y0 - halo), max(0, x0 - halo)
        yb, xb = min(height, y1 + halo), min(width, x1 + halo)
        tile_labels, radius = segment_tile(rgb[ya:yb, xa:xb], radius, min_area, max_area)
        next_label = _paste_core(labels, tile_labels, (ya, xa), (y0, x0, y1, x1), next_label)
    labels = separate_white_cells(labels, rgb, radius)
    if exclude_border:
        clear_border(labels, out=labels)
    labels = relabel_sequential(labels)[0].astype(np.int32)
    yield Progress(len(tiles_), len(tiles_), f"{int(labels.max())} cells")
    return labels


def _paste_core(labels, tile_labels, origin, core, next_label: int) -> int:
    """Copy the tile's objects whose centroid lies in its core, onto free pixels, with new ids."""
    n = int(tile_labels.max())
    if n == 0:
        return next_label
    ya, xa = origin
    y0, x0, y1, x1 = core
    ids = np.arange(1, n + 1)
    counts = np.bincount(tile_labels.ravel(), minlength=n + 1)[1:]
    present = ids[counts > 0]
    centers = np.asarray(ndimage.center_of_mass(tile_labels > 0, tile_labels, present))
    cy, cx = centers[:, 0] + ya, centers[:, 1] + xa
    keep = present[(cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)]
    lookup = np.zeros(n + 1, np.int32)
    lookup[keep] = np.arange(next_label, next_label + len(keep), dtype=np.int32)
    mapped = lookup[tile_labels]
    window = labels[ya : ya + tile_labels.shape[0], xa : xa + tile_labels.shape[1]]
    free = (window == 0) & (mapped > 0)
    window[free] = mapped[free]
    return next_label + len(keep)


def classical_segment(image, *, min_area=None, max_area=None, exclude_border=False,
                      cell_radius=None, tile=TILE) -> np.ndarray:
    """Sync wrapper of :func:`iter_classical_segment`: (H, W) int32 instance labels."""
    return run_to_completion(iter_classical_segment(
        image, min_area=min_area, max_area=max_area, exclude_border=exclude_border,
        cell_radius=cell_radius, tile=tile))


def iter_segment(
    image,
    method: str = "classical",
    *,
    cancel: threading.Event | None = None,
    image_name: str = "image",
    subject: str = "unknown",
    **params,
) -> ProgressGen[SegmentationResult]:
    """Segment a smear with ``method`` and measure its cells; returns a SegmentationResult."""
    if method not in METHODS:
        raise InputError(f"unknown segmentation method '{method}'; choose one of {METHODS}")
    backend = iter_classical_segment if method == "classical" else cellpose_segment
    accepted = set(inspect.signature(backend).parameters) - {"image", "cancel"}
    unknown = sorted(set(params) - accepted)
    if unknown:
        raise InputError(f"the {method} method takes no parameter(s) {unknown}; "
                         f"it takes {sorted(accepted)}")
    if method == "classical" and is_lazy(image):  # never loaded whole (segment.tiled)
        return (yield from iter_tiled_segment(image, cancel=cancel, image_name=image_name,
                                              subject=subject, **params))
    rgb = validate_image(image)  # cellpose sees the whole smear
    if method == "classical":
        labels = yield from iter_classical_segment(rgb, cancel=cancel, **params)
    else:
        yield Progress(0, 2, "cellpose: segmenting")
        check_cancel(cancel)
        labels = cellpose_segment(rgb, **params)
        check_cancel(cancel)
        yield Progress(1, 2, "cellpose: measuring cells")
    features = region_features(labels, rgb, image_name=image_name, subject=subject)
    kinds = object_kinds(labels, rgb)
    features = add_object_columns(features, labels, rgb, kinds)
    return SegmentationResult(labels=labels, features=features,
                              warning=plausibility_warning(labels, rgb, kinds))


def segment(image, method: str = "classical", *, cancel=None, image_name: str = "image",
            subject: str = "unknown", **params) -> SegmentationResult:
    """Sync wrapper of :func:`iter_segment`."""
    return run_to_completion(iter_segment(image, method, cancel=cancel, image_name=image_name,
                                          subject=subject, **params))
