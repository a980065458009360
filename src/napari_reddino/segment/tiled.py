"""Segmentation of smears too large to hold in memory, tile by tile from a lazy array.

A 20000 x 20000 smear is 1.2 GB as uint8 and ~10 GB once converted to floats whole, so dask, zarr
and memory-mapped arrays are read here one window at a time: a tile plus a halo of six cell radii.
Each window is segmented whole; an object belongs to the tile whose core holds its centroid, so a
cell cut by a tile seam is segmented in one piece from the window that holds it all and pasted
once, with a globally unique id (the stitching of dask-image's ``label``, without its merge step:
the halo makes merging unnecessary). The cell table (geometry, color, kind, border flag) and the
plausibility counts are measured per window too; only the int32 label image is full size (pass
``out``, e.g. a zarr array or ``np.memmap``, to keep even that on disk).
"""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
from scipy import ndimage

from napari_reddino.io.cell_table import (
    CENTROID_X,
    CENTROID_Y,
    KIND,
    LABEL,
    TOUCHES_BORDER,
    empty_table,
    region_features,
)
from napari_reddino.io.image_checks import InputError, LazyImage
from napari_reddino.progress import Progress, ProgressGen, check_cancel
from napari_reddino.segment.check import (
    SegmentationResult,
    add_object_columns,
    coverage_counts,
    coverage_warning,
    join_warnings,
    oversize_warning,
)
from napari_reddino.segment.classical import sample_cell_radius, segment_tile, stain_density
from napari_reddino.segment.kind import object_kinds, separate_white_cells

TILE = 2048  # tile side; tiles overlap by a halo of six cell radii
HALO_RADII = 6


def check_segment_params(min_area, max_area, tile) -> None:
    """Raise :class:`InputError` for parameters under which no cell could be found."""
    if tile < 64:
        raise InputError(f"tile must be at least 64 pixels, got {tile}")
    for name, value in (("min_area", min_area), ("max_area", max_area)):
        if value is not None and not value >= 0:
            raise InputError(f"{name} must be a cell area in pixels >= 0, got {value}")
    if min_area is not None and max_area is not None and min_area > max_area:
        raise InputError(f"min_area ({min_area}) is larger than max_area ({max_area}): no cell "
                         "could pass; swap them")


def tiles(height: int, width: int, tile: int):
    """(y0, x0, y1, x1) cores covering the image in raster order."""
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            yield y, x, min(y + tile, height), min(x + tile, width)


def _owned(tile_labels: np.ndarray, origin, core) -> np.ndarray:
    """Ids of the window's objects whose centroid lies in the tile's core."""
    present = np.flatnonzero(np.bincount(tile_labels.ravel()))
    present = present[present > 0]
    if present.size == 0:
        return present
    centers = np.asarray(ndimage.center_of_mass(tile_labels > 0, tile_labels, present))
    cy, cx = centers[:, 0] + origin[0], centers[:, 1] + origin[1]
    y0, x0, y1, x1 = core
    return present[(cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)]


def _on_image_border(window: np.ndarray, box, shape) -> np.ndarray:
    """Ids in ``window`` (at ``box`` = ya, xa, yb, xb of an image of ``shape``) on its border."""
    ya, xa, yb, xb = box
    edges = [window[0]] if ya == 0 else []
    edges += [window[-1]] if yb == shape[0] else []
    edges += [window[:, 0]] if xa == 0 else []
    edges += [window[:, -1]] if xb == shape[1] else []
    ids = np.unique(np.concatenate(edges)) if edges else np.zeros(0, np.int32)
    return ids[ids > 0]


def _paste(window: np.ndarray, tile_labels: np.ndarray, owned: np.ndarray, next_label: int):
    """Paste the owned objects onto free pixels of ``window`` with new ids; (tile ids, new ids)."""
    lookup = np.zeros(int(tile_labels.max()) + 1, np.int32)
    lookup[owned] = 1
    free = (lookup[tile_labels] > 0) & (window == 0)
    survivors = np.unique(tile_labels[free])
    new_ids = np.arange(next_label, next_label + survivors.size, dtype=np.int32)
    lookup[survivors] = new_ids
    window[free] = lookup[tile_labels[free]]
    return survivors, new_ids


def _tile_table(window, rgb, origin, box, shape, tile_ids, new_ids, kinds, names):
    """The cell table of the objects just pasted (ids >= new_ids[0]), in image coordinates."""
    mine = np.where(window >= new_ids[0], window, 0)
    table = region_features(mine, rgb, image_name=names[0], subject=names[1])
    table[CENTROID_Y] += origin[0]
    table[CENTROID_X] += origin[1]
    kind_of = dict(zip(new_ids.tolist(), kinds[tile_ids].tolist()))
    table[KIND] = table[LABEL].map(kind_of)
    table[TOUCHES_BORDER] = table[LABEL].isin(_on_image_border(mine, box, shape))
    return table


def iter_tiled_segment(
    image,
    *,
    min_area: float | None = None,
    max_area: float | None = None,
    exclude_border: bool = False,
    cell_radius: float | None = None,
    tile: int = TILE,
    out=None,
    image_name: str = "image",
    subject: str = "unknown",
    cancel: threading.Event | None = None,
) -> ProgressGen[SegmentationResult]:
    """Classical segmentation of a lazy smear window by window; returns a SegmentationResult.

    Same parameters as ``segment.iter_classical_segment``; ``out`` receives the (H, W) int32
    labels (a new numpy array when None). No window is larger than a tile plus its halo.
    """
    lazy = image if isinstance(image, LazyImage) else LazyImage(image)
    check_segment_params(min_area, max_area, tile)
    shape = lazy.shape
    labels = np.zeros(shape, np.int32) if out is None else out
    cores = list(tiles(*shape, int(tile)))
    radius, next_label, tables = cell_radius, 1, []
    if radius is None and len(cores) > 1:
        radius = sample_cell_radius(lazy.window, shape, min(int(tile), 1024))
    n_stained = n_covered = 0
    for done, core in enumerate(cores):
        check_cancel(cancel)
        yield Progress(done, len(cores), f"segmenting tile {done + 1}/{len(cores)}")
        halo = 0 if len(cores) == 1 else int(HALO_RADII * (radius or 30))
        y0, x0, y1, x1 = core
        box = (max(0, y0 - halo), max(0, x0 - halo), min(shape[0], y1 + halo),
               min(shape[1], x1 + halo))
        ya, xa, yb, xb = box
        rgb = lazy.window(ya, yb, xa, xb)
        density = stain_density(rgb)  # computed once: the segmentation and the check need it
        tile_labels, radius = segment_tile(rgb, radius, min_area, max_area, density)
        tile_labels = separate_white_cells(tile_labels, rgb, radius)
        kinds = object_kinds(tile_labels, rgb)
        inner = (slice(y0 - ya, y1 - ya), slice(x0 - xa, x1 - xa))
        stained, covered = coverage_counts(tile_labels, rgb, kinds, inner, density)
        n_stained, n_covered = n_stained + stained, n_covered + covered
        if not tile_labels.any():
            continue
        owned = _owned(tile_labels, (ya, xa), core)
        if exclude_border:
            owned = np.setdiff1d(owned, _on_image_border(tile_labels, box, shape))
        window = np.asarray(labels[ya:yb, xa:xb])
        tile_ids, new_ids = _paste(window, tile_labels, owned, next_label)
        if not isinstance(labels, np.ndarray):  # zarr and the like hand out copies
            labels[ya:yb, xa:xb] = window
        if new_ids.size:
            tables.append(_tile_table(window, rgb, (ya, xa), box, shape, tile_ids, new_ids,
                                      kinds, (image_name, subject)))
            next_label += new_ids.size
    if tables:
        features = pd.concat(tables, ignore_index=True).sort_values(LABEL, ignore_index=True)
    else:
        features = add_object_columns(empty_table(), np.zeros((8, 8), np.int32),
                                      np.zeros((8, 8, 3), np.uint8))
    red_areas = features.loc[features[KIND] == "rbc", "area"].to_numpy()
    warning = join_warnings(
        coverage_warning(n_stained, n_covered, red_areas, shape[0] * shape[1]),
        oversize_warning(features["area"].to_numpy(), features[KIND].astype(str).to_numpy(),
                         ~features[TOUCHES_BORDER].to_numpy(bool)))
    yield Progress(len(cores), len(cores), f"{next_label - 1} cells")
    return SegmentationResult(labels=labels, features=features, warning=warning)
