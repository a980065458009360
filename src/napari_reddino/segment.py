"""Cell segmentation of smears: input checking, a classical RBC backend, and the shared entry point.

The classical backend needs no weights: stain optical density against a smooth background
estimate, an Otsu threshold, filling the central pallor, then a distance-transform watershed
(h-maxima markers) to split touching cells, and size filters relative to the estimated cell
radius. Large smears run tile by tile (bounded memory, one progress unit per tile). The
cellpose backend lives in ``segment_cellpose`` and shares :func:`iter_segment`.
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima, remove_small_holes
from skimage.segmentation import clear_border, relabel_sequential, watershed

from ._progress import Progress, ProgressGen, check_cancel, run_to_completion
from .cells import region_features
from .segment_cellpose import WeightsNotFoundError, cellpose_segment

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
    "validate_image",
]

METHODS = ("classical", "cellpose")
MIN_SIDE = 8
TILE = 2048  # tile side of the classical backend; tiles overlap by a few cell diameters
MIN_STAIN_OD = 0.04  # below this mean optical density there is no stained object at all
SPLIT_DEPTH = 0.07  # h-maxima depth (x cell radius) that makes a distance peak its own cell


class InputError(ValueError):
    """The image cannot be segmented as given; the message says why and what is expected."""


@dataclass
class SegmentationResult:
    """Instance labels (H, W) int32 and their cell table (``cells.region_features``)."""

    labels: np.ndarray
    features: pd.DataFrame


def _to_float(data: np.ndarray) -> np.ndarray:
    values = data.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError("the image has no finite pixel values (all NaN or infinite)")
    if not finite.all():  # 0 would read as a dark, stained object: fill with the typical value
        values[~finite] = np.median(values[finite])
    return values


def validate_image(data) -> np.ndarray:
    """Return ``data`` as an (H, W, 3) uint8 RGB smear, or raise :class:`InputError`.

    Accepts gray (H, W) or (H, W, 1), RGB, RGBA (alpha dropped), bool, 8/16/32-bit integers
    and floats (rescaled to 0-255: floats <= 1 are taken as [0, 1], other ranges by their
    maximum, negative data by its min-max). NaN/inf become the median of the finite pixels.
    """
    try:
        array = np.asarray(data)
    except Exception as exc:  # e.g. a ragged list
        raise InputError(f"cannot read the image as an array: {exc}") from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise InputError(f"the image must hold numbers, got dtype {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"expected a 2D gray or (H, W, 3|4) colour image, got shape "
                         f"{array.shape}; pick one plane of a stack before segmenting")
    if min(array.shape[:2]) < MIN_SIDE:
        raise InputError(f"the image is {array.shape[0]}x{array.shape[1]} pixels; a smear "
                         f"needs at least {MIN_SIDE}x{MIN_SIDE}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = _to_float(array)
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1.0:
        scale, offset = 255.0, 0.0
    elif low >= 0:
        scale, offset = (255.0 / high if high > 255 else 1.0), 0.0
    else:
        scale, offset = 255.0 / max(high - low, 1e-12), -low
    return np.clip((values + offset) * scale + 0.5, 0, 255).astype(np.uint8)


_LOG_LUT = np.log(np.arange(256, dtype=np.float32) + 1.0)


def _log_background(log_rgb: np.ndarray) -> np.ndarray:
    """Smooth log-brightness of the empty glass: max filter at low resolution, upsampled."""
    height, width = log_rgb.shape
    factor = max(1, min(height, width) // 256)
    h, w = height // factor, width // factor
    small = log_rgb[: h * factor, : w * factor].reshape(h, factor, w, factor).mean((1, 3))
    size = max(5, min(h, w) // 6)
    bright = ndimage.maximum_filter(small, size=size)
    bright = ndimage.gaussian_filter(bright, size / 2)
    zoomed = ndimage.zoom(bright, (height / h, width / w), order=1, grid_mode=True,
                          mode="nearest")
    return zoomed[:height, :width]


def stain_density(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over the channels against the background: high where stained."""
    log_rgb = _LOG_LUT[rgb].mean(axis=2)  # mean of per-channel logs = log of geometric mean
    density = _log_background(log_rgb) - log_rgb
    np.maximum(density, 0, out=density)
    return ndimage.gaussian_filter(density, 1.0)


def estimate_cell_radius(mask: np.ndarray) -> float | None:
    """Typical cell radius: area-weighted median of each blob's inscribed-circle radius.

    Weighting by area lets whole cells and clumps (whose distance peak is still one cell's
    radius) outvote stain specks and fragments. None when there is no blob at all.
    """
    step = 2 if min(mask.shape) >= 512 else 1  # half resolution is plenty for a median
    filled = ndimage.binary_fill_holes(mask[::step, ::step])
    blobs, n = ndimage.label(filled)
    if n == 0:
        return None
    dist = ndimage.distance_transform_edt(filled) * step
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, blobs.ravel(), dist.ravel())
    peaks = peaks[1:]
    areas = np.bincount(blobs.ravel(), minlength=n + 1)[1:]
    usable = peaks >= 3  # specks are not cells
    if not usable.any():
        return None
    peaks, weights = peaks[usable], np.sqrt(areas[usable])
    order = np.argsort(peaks)
    cumulative = np.cumsum(weights[order])
    return float(peaks[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def _split_markers(dist: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """One marker per distance peak deeper than SPLIT_DEPTH x radius (found at reduced scale)."""
    step = max(1, int(radius // 8))  # the smoothed distance map is flat at this scale
    small = np.ascontiguousarray(dist[::step, ::step])
    peaks, _ = ndimage.label(h_maxima(small, SPLIT_DEPTH * radius))
    markers = np.zeros(dist.shape, np.int32)
    markers[::step, ::step] = peaks
    markers[~mask] = 0
    return markers


def _segment_tile(rgb: np.ndarray, radius: float | None, min_area, max_area):
    """Classical segmentation of one tile, no border handling; returns (labels, radius)."""
    density = stain_density(rgb)
    high = float(density.max())
    if high < MIN_STAIN_OD:
        return np.zeros(density.shape, np.int32), radius
    threshold = max(threshold_otsu(density), MIN_STAIN_OD)
    mask = density > threshold
    radius = radius or estimate_cell_radius(mask)
    if radius is None:
        return np.zeros(density.shape, np.int32), radius
    cell_area = np.pi * radius**2
    mask = remove_small_holes(mask, max_size=int(1.2 * cell_area))  # the central pallor
    mask = ndimage.binary_opening(mask, iterations=max(1, int(radius * 0.08)))
    dist = ndimage.distance_transform_edt(mask).astype(np.float32)
    dist = ndimage.gaussian_filter(dist, max(1.0, 0.12 * radius))
    markers = _split_markers(dist, mask, radius)
    labels = watershed(-dist, markers, mask=mask).astype(np.int32)
    areas = np.bincount(labels.ravel())
    low = 0.1 * cell_area if min_area is None else min_area
    high_area = 8.0 * cell_area if max_area is None else max_area
    bad = (areas < low) | (areas > high_area)
    bad[0] = False
    labels[bad[labels]] = 0
    return labels, radius


def _tiles(height: int, width: int, tile: int):
    for y in range(0, height, tile):
        for x in range(0, width, tile):
            yield y, x, min(y + tile, height), min(x + tile, width)


def iter_classical_segment(
    image,
    *,
    min_area: float | None = None,
    max_area: float | None = None,
    exclude_border: bool = True,
    cell_radius: float | None = None,
    tile: int = TILE,
    cancel: threading.Event | None = None,
) -> ProgressGen[np.ndarray]:
    """Classical RBC segmentation, tile by tile; yields Progress per tile, returns int32 labels.

    ``cell_radius`` (pixels) is estimated from the first tile when None; ``min_area`` and
    ``max_area`` default to 0.2x and 8x the area of a cell of that radius.
    """
    rgb = validate_image(image)
    if tile < 64:
        raise InputError(f"tile must be at least 64 pixels, got {tile}")
    height, width = rgb.shape[:2]
    tiles = list(_tiles(height, width, int(tile)))
    labels = np.zeros((height, width), np.int32)
    radius = cell_radius
    next_label = 1
    for done, (y0, x0, y1, x1) in enumerate(tiles):
        check_cancel(cancel)
        yield Progress(done, len(tiles), f"segmenting tile {done + 1}/{len(tiles)}")
        halo = 0 if len(tiles) == 1 else int(6 * (radius or 30))
        ya, xa = max(0, y0 - halo), max(0, x0 - halo)
        yb, xb = min(height, y1 + halo), min(width, x1 + halo)
        tile_labels, radius = _segment_tile(rgb[ya:yb, xa:xb], radius, min_area, max_area)
        next_label = _paste_core(labels, tile_labels, (ya, xa), (y0, x0, y1, x1), next_label)
    if exclude_border:
        clear_border(labels, out=labels)
    labels = relabel_sequential(labels)[0].astype(np.int32)
    yield Progress(len(tiles), len(tiles), f"{int(labels.max())} cells")
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


def classical_segment(image, *, min_area=None, max_area=None, exclude_border=True,
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
    rgb = validate_image(image)
    if method == "classical":
        labels = yield from iter_classical_segment(rgb, cancel=cancel, **params)
    else:
        yield Progress(0, 2, "cellpose: segmenting")
        check_cancel(cancel)
        labels = cellpose_segment(rgb, **params)
        check_cancel(cancel)
        yield Progress(1, 2, "cellpose: measuring cells")
    features = region_features(labels, rgb, image_name=image_name, subject=subject)
    return SegmentationResult(labels=labels, features=features)


def segment(image, method: str = "classical", *, cancel=None, image_name: str = "image",
            subject: str = "unknown", **params) -> SegmentationResult:
    """Sync wrapper of :func:`iter_segment`."""
    return run_to_completion(iter_segment(image, method, cancel=cancel, image_name=image_name,
                                          subject=subject, **params))
