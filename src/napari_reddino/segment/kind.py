"""What each segmented object is: ``rbc``, ``wbc``, ``platelet`` or ``other``.

Wright's stain colors haemoglobin pink (it absorbs green and blue, little red) and chromatin purple
(it absorbs red strongly, blue less). So a pixel is *nuclear* when its red optical density is both
high for this smear and high relative to its blue density, or very high whatever the hue, judged
against the smear's own red cells (stains and cameras differ, so every level is relative). An
object holding a nucleus of at least a third of a red cell's area is a white cell; a small object
mostly of nuclear stain is a platelet; a speck under a tenth of a red cell is ``other``; the rest
are red cells.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from napari_reddino.segment.classical import channel_density

KINDS = ("rbc", "wbc", "platelet", "other")
NUCLEUS_RED = 1.4  # nuclear red density, x the smear's median red density over objects
NUCLEUS_RATIO = 2.0  # nuclear red/blue density ratio, x the smear's median ratio over objects
NUCLEUS_DARK = 4.0  # or, whatever the hue (magenta nuclei of pale smears), this x red density
WBC_NUCLEUS = 0.3  # nuclear area of a white cell, x red-cell area
PLATELET_AREA = 0.45  # a platelet is smaller than this, x red-cell area
SPECK_AREA = 0.1  # smaller objects are debris, x red-cell area


def nuclear_pixels(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Boolean map of chromatin-stained (purple) pixels, relative to this smear's objects."""
    red = ndimage.gaussian_filter(channel_density(rgb, 0), 1.0)
    blue = ndimage.gaussian_filter(channel_density(rgb, 2), 1.0)
    inside = labels > 0
    if not inside.any():
        return np.zeros(labels.shape, bool)
    ratio = red / np.maximum(blue, 0.02)
    typical_red = max(float(np.median(red[inside])), 0.02)
    typical_ratio = float(np.median(ratio[inside]))
    purple = (red > NUCLEUS_RED * typical_red) & (ratio > NUCLEUS_RATIO * typical_ratio)
    return purple | (red > NUCLEUS_DARK * typical_red)


def _cell_area(labels: np.ndarray, radius: float | None) -> float:
    if radius:
        return float(np.pi * radius**2)
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(areas[areas > 0]))


def separate_white_cells(labels: np.ndarray, rgb: np.ndarray, radius: float | None = None):
    """Each white cell becomes one object: its nucleus (all lobes) and a rim of cytoplasm.

    The watershed cuts a lobed nucleus into "cells" and may drop a large white cell as a clump;
    a connected nucleus at least WBC_NUCLEUS red cells large replaces whatever it overlapped.
    """
    if not labels.any():
        return labels
    cell_area = _cell_area(labels, radius)
    grow = max(1, int(0.25 * np.sqrt(cell_area / np.pi)))
    nuclear = ndimage.binary_opening(nuclear_pixels(rgb, labels), iterations=2)
    nuclei, n = ndimage.label(ndimage.binary_dilation(nuclear, iterations=grow))  # lobes join
    if n == 0:
        return labels
    nuclei[~nuclear] = 0
    sizes = np.bincount(nuclei.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes >= WBC_NUCLEUS * cell_area)
    big = big[big > 0]
    if big.size == 0:
        return labels
    out = labels.copy()
    next_id = int(labels.max()) + 1
    areas = np.bincount(labels.ravel())
    boxes = ndimage.find_objects(nuclei)
    for index in big:
        rows, cols = boxes[index - 1]
        y0, x0 = max(0, rows.start - grow), max(0, cols.start - grow)
        window = (slice(y0, rows.stop + grow), slice(x0, cols.stop + grow))
        nucleus = nuclei[window] == index
        hull = ndimage.binary_dilation(convex_hull_image(nucleus), iterations=grow)
        inside = labels[window][hull]
        # objects mostly inside the nucleus' hull are its lobes or cytoplasm, not red cells
        share = np.bincount(inside, minlength=areas.size) / np.maximum(areas, 1)
        lobes = np.isin(labels[window], np.flatnonzero(share >= 0.5)[1:])
        out[window][(hull & (labels[window] > 0)) | nucleus | lobes] = next_id
        next_id += 1
    remaining = np.bincount(out.ravel(), minlength=next_id)
    out[remaining[out] < SPECK_AREA * cell_area] = 0  # slivers left of the cells it replaced
    return out


def object_kinds(labels: np.ndarray, rgb: np.ndarray, radius: float | None = None) -> np.ndarray:
    """Kind of every label id (index = id; index 0, the background, is '')."""
    n = int(labels.max())
    kinds = np.full(n + 1, "", dtype=object)
    if n == 0:
        return kinds
    areas = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    nuclear = np.bincount(labels.ravel(), weights=nuclear_pixels(rgb, labels).ravel(),
                          minlength=n + 1)
    cell_area = _cell_area(labels, radius)
    kinds[1:] = "rbc"
    kinds[1:][areas[1:] < SPECK_AREA * cell_area] = "other"
    small = (areas < PLATELET_AREA * cell_area) & (nuclear > 0.3 * areas)
    kinds[small] = "platelet"
    kinds[nuclear >= WBC_NUCLEUS * cell_area] = "wbc"
    kinds[0] = ""
    return kinds
