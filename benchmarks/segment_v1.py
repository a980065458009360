"""The classical backend as it was before issue 11 (frozen copy): the real benchmark's baseline.

One tile, no progress: stain optical density against a max-filter background, Otsu threshold,
hole filling, opening, distance watershed with h-maxima markers, size filters, border cells
dropped. Kept only so ``segmentation_real.py`` can print old and new side by side.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu
from skimage.morphology import h_maxima, remove_small_holes
from skimage.segmentation import clear_border, relabel_sequential, watershed

_LOG_LUT = np.log(np.arange(256, dtype=np.float32) + 1.0)


def _log_background(log_rgb):
    height, width = log_rgb.shape
    factor = max(1, min(height, width) // 256)
    h, w = height // factor, width // factor
    small = log_rgb[: h * factor, : w * factor].reshape(h, factor, w, factor).mean((1, 3))
    size = max(5, min(h, w) // 6)
    bright = ndimage.gaussian_filter(ndimage.maximum_filter(small, size=size), size / 2)
    zoomed = ndimage.zoom(bright, (height / h, width / w), order=1, grid_mode=True,
                          mode="nearest")
    return zoomed[:height, :width]


def _density(rgb):
    log_rgb = _LOG_LUT[rgb].mean(axis=2)
    density = np.maximum(_log_background(log_rgb) - log_rgb, 0)
    return ndimage.gaussian_filter(density, 1.0)


def _radius(mask):
    step = 2 if min(mask.shape) >= 512 else 1
    filled = ndimage.binary_fill_holes(mask[::step, ::step])
    blobs, n = ndimage.label(filled)
    if n == 0:
        return None
    dist = ndimage.distance_transform_edt(filled) * step
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, blobs.ravel(), dist.ravel())
    peaks = peaks[1:]
    areas = np.bincount(blobs.ravel(), minlength=n + 1)[1:]
    usable = peaks >= 3
    if not usable.any():
        return None
    peaks, weights = peaks[usable], np.sqrt(areas[usable])
    order = np.argsort(peaks)
    cumulative = np.cumsum(weights[order])
    return float(peaks[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


def classical_v1(rgb: np.ndarray, exclude_border: bool = True) -> np.ndarray:
    """Instance labels of one smear by the pre-issue-11 classical backend."""
    density = _density(rgb)
    if float(density.max()) < 0.04:
        return np.zeros(density.shape, np.int32)
    mask = density > max(threshold_otsu(density), 0.04)
    radius = _radius(mask)
    if radius is None:
        return np.zeros(density.shape, np.int32)
    cell_area = np.pi * radius**2
    mask = remove_small_holes(mask, max_size=int(1.2 * cell_area))
    mask = ndimage.binary_opening(mask, iterations=max(1, int(radius * 0.08)))
    dist = ndimage.distance_transform_edt(mask).astype(np.float32)
    dist = ndimage.gaussian_filter(dist, max(1.0, 0.12 * radius))
    step = max(1, int(radius // 8))
    peaks, _ = ndimage.label(h_maxima(np.ascontiguousarray(dist[::step, ::step]), 0.07 * radius))
    markers = np.zeros(dist.shape, np.int32)
    markers[::step, ::step] = peaks
    markers[~mask] = 0
    labels = watershed(-dist, markers, mask=mask).astype(np.int32)
    areas = np.bincount(labels.ravel())
    bad = (areas < 0.1 * cell_area) | (areas > 8.0 * cell_area)
    bad[0] = False
    labels[bad[labels]] = 0
    if exclude_border:
        clear_border(labels, out=labels)
    return relabel_sequential(labels)[0].astype(np.int32)
