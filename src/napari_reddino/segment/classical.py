"""The classical (weight-free) red-cell segmentation of one tile: stain model, mask, splitting.

Each step was chosen by measuring on real Wright-stained smears (benchmarks/segmentation_real.py).
The stain density is the optical density against a smooth estimate of the empty glass, so uneven
illumination does not move the threshold. The threshold is Otsu's on the density *clipped* at the
90th percentile of the stained pixels (those above the glass noise), so a white cell's nucleus or
black debris (density 3-10x a red cell's) cannot pull it up and leave only that object. Hysteresis
grows faint rims from confident pixels; hole filling, and the convex hull of small concave
fragments whose hull is stained, turn a pale cell's rim (one or two crescents) into its whole disc.
A distance-transform watershed with h-maxima markers on the confident core splits touching cells;
size filters scale with the estimated cell radius.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.filters import apply_hysteresis_threshold, threshold_otsu
from skimage.measure import regionprops
from skimage.morphology import h_maxima, remove_small_holes
from skimage.segmentation import watershed

from napari_reddino.segment.density import stain_density
from napari_reddino.segment.marks import drawn_marks, erase_marks

MIN_STAIN_OD = 0.04  # below this density there is no stained object at all
SPLIT_DEPTH = 0.07  # h-maxima depth (x cell radius) that makes a distance peak its own cell
CLIP_PERCENTILE = 90.0  # of stained pixels: nuclei sit above it, red cells below
HYSTERESIS_LOW = 0.6  # low threshold as a share of the high one
HULL_STAIN = 1.0  # a fragment's hull is kept when its added pixels average this x glass level
def _glass_level(sample: np.ndarray) -> float:
    """Density above which a pixel is stained: the glass mode plus 4 sigma of its lower flank.

    The empty glass is the commonest density; its lower flank (below the mode) is pure noise,
    so its spread gives the noise level without any stained pixel in it.
    """
    top = float(np.percentile(sample, 99.5)) or 1.0
    counts, edges = np.histogram(sample, bins=256, range=(0.0, top))
    mode = edges[int(np.argmax(ndimage.gaussian_filter1d(counts.astype(float), 2)))]
    below = sample[sample <= mode]
    sigma = float(np.sqrt(np.mean((below - mode) ** 2))) if below.size else 0.0
    return mode + max(4 * sigma, 0.5 * MIN_STAIN_OD)


def robust_threshold(density: np.ndarray) -> tuple[float, float]:
    """(low, high) thresholds: high is Otsu between glass and red cells, deaf to nuclei and debris
    (see the module docstring); low, for hysteresis, stays above the glass noise."""
    sample = density[::2, ::2].ravel()
    glass = _glass_level(sample)
    stained = sample[sample > glass]
    if stained.size < 64:
        high = max(float(threshold_otsu(sample)), MIN_STAIN_OD)
    else:
        cap = np.percentile(stained, CLIP_PERCENTILE)
        high = max(float(threshold_otsu(np.minimum(sample, cap))), MIN_STAIN_OD)
    return min(max(HYSTERESIS_LOW * high, glass), high), high, glass


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


def _complete_fragments(mask: np.ndarray, density: np.ndarray, glass: float,
                        radius: float) -> np.ndarray:
    """Rim crescents and open rings of pale cells become whole discs (convex hull per blob).

    Only where the hull's added pixels are stained on average (a pale cell's center is still
    above the glass): a sickle cell's or a helmet cell's concave side is empty glass and stays out.
    """
    cell_area = np.pi * radius**2
    blobs, _ = ndimage.label(mask)
    out = mask.copy()
    for region in regionprops(blobs):
        if not 0.08 * cell_area < region.area < 1.3 * cell_area:
            continue
        if region.area > 0.65 * region.image.size:  # a disc fills 79 % of its box: no crescent
            continue
        hull = region.image_convex
        if region.area >= 0.85 * hull.sum() or hull.sum() > 1.4 * cell_area:
            continue
        y0, x0, y1, x1 = region.bbox
        added = hull & ~region.image
        if density[y0:y1, x0:x1][added].mean() > HULL_STAIN * glass:
            out[y0:y1, x0:x1] |= hull
    return out


def _split_markers(dist: np.ndarray, mask: np.ndarray, radius: float) -> np.ndarray:
    """One marker per distance peak deeper than SPLIT_DEPTH x radius (found at reduced scale).

    A blob of the mask with no such peak (a thin schistocyte fragment: its distance map is too
    shallow for h-maxima) still gets one marker at its deepest pixel, so it becomes an object
    instead of being dropped by the watershed.
    """
    step = max(1, int(radius // 8))  # the smoothed distance map is flat at this scale
    small = np.ascontiguousarray(dist[::step, ::step])
    peaks, _ = ndimage.label(h_maxima(small, SPLIT_DEPTH * radius))
    markers = np.zeros(dist.shape, np.int32)
    markers[::step, ::step] = peaks
    markers[~mask] = 0
    blobs, n = ndimage.label(mask)
    if n:
        marked = np.bincount(blobs[markers > 0], minlength=n + 1).astype(bool)
        unmarked = np.flatnonzero(~marked[1:]) + 1
        if len(unmarked):
            where = np.array(ndimage.maximum_position(dist, blobs, unmarked)).reshape(-1, 2)
            markers[where[:, 0], where[:, 1]] = int(markers.max()) + np.arange(1, len(where) + 1)
    return markers


def _whole_cells(mask, density, glass, radius):
    """Pallor filled, rim fragments completed, spurs opened off; the border erodes nothing."""
    cell_area = np.pi * radius**2
    mask = remove_small_holes(mask, max_size=int(1.2 * cell_area))  # the central pallor
    if HULL_STAIN > 0:
        mask = _complete_fragments(mask, density, glass, radius)
        mask = remove_small_holes(mask, max_size=int(1.2 * cell_area))
    spurs = max(1, int(radius * 0.08))
    opened = ndimage.binary_erosion(mask, iterations=spurs, border_value=1)
    return ndimage.binary_dilation(opened, iterations=spurs) & mask


def cell_mask(rgb: np.ndarray, radius: float | None, density: np.ndarray | None = None,
              marks: np.ndarray | None = None):
    """(whole-cell mask, confident core, cell radius (estimated when None)); masks None if empty.

    The core (high threshold) gives the watershed its basins; the mask adds the faint rims grown
    by hysteresis, which would fill the necks between touching cells if basins came from it.
    ``density`` is ``stain_density(rgb)`` when the caller has it already. Pixels of drawn marks
    (``marks``, ``segment.marks``) are glass here: a mark joins no cell and no cell reaches
    through it to another.
    """
    density = stain_density(rgb) if density is None else density
    if marks is not None and marks.any():
        density = np.where(marks, 0, density).astype(density.dtype)
    if float(density.max()) < MIN_STAIN_OD:
        return None, None, radius
    low, high, glass = robust_threshold(density)
    confident = density > high
    radius = radius or estimate_cell_radius(confident)
    if radius is None:
        return None, None, radius
    core = _whole_cells(confident, density, glass, radius)
    grown = apply_hysteresis_threshold(density, low, high) | core
    mask = _whole_cells(grown, density, glass, radius)
    if marks is not None:  # hole filling may have closed a cell over a mark
        mask &= ~marks
        core &= ~marks
    return mask, core, radius


def _add_marks(labels: np.ndarray, marks: np.ndarray) -> None:
    """Each drawn mark becomes one object of its own (kind ``other``, ``segment.kind``)."""
    pieces, n = ndimage.label(marks, structure=np.ones((3, 3), bool))
    if n:
        start = int(labels.max())
        labels[pieces > 0] = pieces[pieces > 0] + start


def segment_tile(rgb: np.ndarray, radius: float | None, min_area, max_area, density=None):
    """Classical segmentation of one tile, no border handling; returns (labels, radius)."""
    marks = drawn_marks(rgb)
    if marks.any():  # the density around a mark is measured as if it were not there
        density = stain_density(erase_marks(rgb, marks))
    mask, core, radius = cell_mask(rgb, radius, density, marks)
    if mask is None:
        labels = np.zeros(rgb.shape[:2], np.int32)
        _add_marks(labels, marks)
        return labels, radius
    cell_area = np.pi * radius**2
    # markers and basins come from the confident core: faint rims grown by hysteresis fill the
    # gaps between touching cells and would hide the necks the watershed splits at
    dist = ndimage.distance_transform_edt(core).astype(np.float32)
    dist = ndimage.gaussian_filter(dist, max(1.0, 0.12 * radius))
    markers = _split_markers(dist, mask, radius)
    labels = watershed(-dist, markers, mask=mask).astype(np.int32)
    areas = np.bincount(labels.ravel())
    low = 0.1 * cell_area if min_area is None else min_area
    high_area = 8.0 * cell_area if max_area is None else max_area
    bad = (areas < low) | (areas > high_area)
    bad[0] = False
    labels[bad[labels]] = 0
    _add_marks(labels, marks)
    return labels, radius


def sample_cell_radius(read_window, shape: tuple[int, int], side: int) -> float | None:
    """Cell radius of a smear too large to load, from a 3 x 3 grid of windows pooled.

    ``read_window(y0, y1, x0, x1)`` returns RGB pixels. The confident masks of the windows are
    laid side by side (one blank column apart) so the area-weighted median runs over all their
    blobs: one corner of a smear can hold a clump or a thin edge and mislead the estimate.
    """
    side = min(side, *shape)
    masks = []
    for fy in (1, 3, 5):
        for fx in (1, 3, 5):
            y0 = min(max(0, shape[0] * fy // 6 - side // 2), shape[0] - side)
            x0 = min(max(0, shape[1] * fx // 6 - side // 2), shape[1] - side)
            density = stain_density(read_window(y0, y0 + side, x0, x0 + side))
            if float(density.max()) < MIN_STAIN_OD:
                continue
            masks += [density > robust_threshold(density)[1], np.zeros((side, 1), bool)]
    return estimate_cell_radius(np.concatenate(masks, axis=1)) if masks else None
