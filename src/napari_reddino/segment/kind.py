"""What each segmented object is: ``rbc``, ``wbc``, ``platelet`` or ``other``.

Wright's stain colors haemoglobin pink (it absorbs green and blue, little red) and chromatin purple
(it absorbs red strongly, blue less). So a pixel is *nuclear* when its red optical density is both
high for this smear and high relative to its blue density, or very high whatever the hue, judged
against the smear's own red cells (stains and cameras differ, so every level is relative); in
both cases it must pass blue better than red or green (azure passes blue: grey smudges and black
debris are dark in every channel and are no nucleus). Drawn marks (``segment.marks``) are never
nuclear. An object holding a nucleus of at least a third of a red cell's area is a white cell
when it is about a red cell's size or more (a smaller one is a platelet clump); a small object
mostly of nuclear stain is a platelet, and so is any object whose hue as a whole is purple (its
red density over its blue density twice the smear's typical object's: haemoglobin absorbs blue
far more than red, a platelet's azurophilic granulomere the reverse), which finds pale platelets
and clumps too faint for the per-pixel rule; a speck under a tenth of a red cell and a drawn mark
are ``other``; the rest are red cells.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image
from skimage.segmentation import watershed

from napari_reddino.segment.classical import robust_threshold
from napari_reddino.segment.density import channel_density, stain_density
from napari_reddino.segment.marks import drawn_marks, erase_marks

KINDS = ("rbc", "wbc", "platelet", "other")
NUCLEUS_RED = 1.4  # nuclear red density, x the smear's median red density over objects
NUCLEUS_RATIO = 2.0  # nuclear red/blue density ratio, x the smear's median ratio over objects
NUCLEUS_DARK = 4.0  # or, whatever the hue (magenta nuclei of pale smears), this x red density
NUCLEUS_BLUE = 0.6  # and blue density under this x the red or green one (chromatin passes blue)
WBC_NUCLEUS = 0.3  # nuclear area of a white cell, x red-cell area
WBC_AREA = 0.7  # a white cell is at least this x a red cell (a small lymphocyte, the smallest,
# is 7-9 um across, a red cell 7.5 um); a smaller object with that much purple is a platelet clump
PLATELET_AREA = 0.45  # a platelet is smaller than this, x red-cell area
SPECK_AREA = 0.1  # smaller objects are debris, x red-cell area
PLATELET_MIN = 0.02  # purple bodies smaller than this are stain noise, x red-cell area
PURPLE_HUE = NUCLEUS_RATIO  # an object's red/blue density ratio, x the smear's median: purple
PLATELET_EDGE = 0.2  # share of a purple body's rim on the glass that makes it a platelet on a cell
RING_GREEN = 0.5  # a rim pixel is haemoglobin above this x the objects' median green density
# (and pink: under NUCLEUS_RATIO x their median red/blue ratio)


def _densities(rgb: np.ndarray, marks: np.ndarray) -> list[np.ndarray]:
    """Smoothed red, green and blue optical densities, drawn marks painted as glass."""
    rgb = erase_marks(rgb, marks)
    return [ndimage.gaussian_filter(channel_density(rgb, c), 1.0) for c in range(3)]


def nuclear_pixels(rgb: np.ndarray, labels: np.ndarray, marks: np.ndarray | None = None):
    """Boolean map of chromatin-stained (purple) pixels, relative to this smear's objects.

    ``marks`` is ``segment.marks.drawn_marks(rgb)`` when the caller has it already.
    """
    marks = drawn_marks(rgb) if marks is None else marks
    red, green, blue = _densities(rgb, marks)
    inside = (labels > 0) & ~marks
    if not inside.any():
        return np.zeros(labels.shape, bool)
    ratio = red / np.maximum(blue, 0.02)
    typical_red = max(float(np.median(red[inside])), 0.02)
    typical_ratio = float(np.median(ratio[inside]))
    purple = (red > NUCLEUS_RED * typical_red) & (ratio > NUCLEUS_RATIO * typical_ratio)
    passes_blue = blue < NUCLEUS_BLUE * np.maximum(red, green)
    return (purple | (red > NUCLEUS_DARK * typical_red)) & passes_blue & ~marks


def _cell_area(labels: np.ndarray, radius: float | None) -> float:
    if radius:
        return float(np.pi * radius**2)
    areas = np.bincount(labels.ravel())[1:]
    return float(np.median(areas[areas > 0]))


def _drawn_ids(labels: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """Boolean per label id: the object is mostly a drawn mark."""
    n = int(labels.max())
    drawn = np.bincount(labels.ravel(), weights=marks.ravel(), minlength=n + 1)
    return drawn > 0.5 * np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1)


def separate_white_cells(labels: np.ndarray, rgb: np.ndarray, radius: float | None = None,
                         marks: np.ndarray | None = None):
    """Each white cell becomes one object: its nucleus (all lobes) and its cytoplasm.

    The watershed cuts a lobed nucleus into "cells" and may drop a large white cell as a clump;
    a connected nucleus at least WBC_NUCLEUS red cells large takes the objects mostly inside
    its hull (lobes, cytoplasm) and those mostly nuclear. A red neighbour keeps its pixels
    even inside the hull: a white cell is bounded by its neighbours and never swallows them.
    Small platelets are then cut out (:func:`separate_platelets`).
    """
    if not labels.any():
        return labels
    marks = drawn_marks(rgb) if marks is None else marks
    cell_area = _cell_area(labels, radius)
    grow = max(1, int(0.25 * np.sqrt(cell_area / np.pi)))
    purple = nuclear_pixels(rgb, labels, marks)
    nuclear = ndimage.binary_opening(purple, iterations=2)
    nuclei, n = ndimage.label(ndimage.binary_dilation(nuclear, iterations=grow))  # lobes join
    nuclei[~nuclear] = 0
    sizes = np.bincount(nuclei.ravel(), minlength=n + 1)
    big = np.flatnonzero(sizes >= WBC_NUCLEUS * cell_area)
    big = big[big > 0]
    out = labels.copy()
    next_id = int(labels.max()) + 1
    areas = np.bincount(labels.ravel())
    drawn = _drawn_ids(labels, marks)
    boxes = ndimage.find_objects(nuclei)
    touched = [0]
    for index in big:
        rows, cols = boxes[index - 1]
        y0, x0 = max(0, rows.start - grow), max(0, cols.start - grow)
        window = (slice(y0, rows.stop + grow), slice(x0, cols.stop + grow))
        nucleus = nuclei[window] == index
        hull = ndimage.binary_dilation(convex_hull_image(nucleus), iterations=grow)
        here = labels[window]
        # objects mostly inside the nucleus' hull are its lobes or cytoplasm; objects mostly
        # nuclear are lobes the hull missed; red neighbours are neither
        share = np.bincount(here[hull], minlength=areas.size) / np.maximum(areas, 1)
        nuclear_share = (np.bincount(here[nucleus], minlength=areas.size)
                         / np.maximum(areas, 1))
        members = np.flatnonzero(((share >= 0.5) | (nuclear_share >= 0.5)) & ~drawn)
        members = members[members > 0]
        touched += np.unique(here[nucleus]).tolist()
        out[window][nucleus | np.isin(here, members)] = next_id
        next_id += 1
    remaining = np.bincount(out.ravel(), minlength=next_id)
    slivers = np.zeros(next_id, bool)
    slivers[np.asarray(touched, int)] = True
    slivers &= remaining < SPECK_AREA * cell_area
    slivers[0] = False
    out[slivers[out]] = 0  # what is left of objects the nucleus took pixels from
    first = int(labels.max()) + 1
    sizes = np.bincount(out.ravel(), minlength=next_id)
    white = np.flatnonzero(sizes[first:] >= WBC_AREA * cell_area) + first
    out = add_cytoplasm(out, rgb, white, np.sqrt(cell_area / np.pi), marks)
    return separate_platelets(out, rgb, purple, cell_area)


def add_cytoplasm(labels: np.ndarray, rgb: np.ndarray, white: np.ndarray, radius: float,
                  marks: np.ndarray) -> np.ndarray:
    """White cells ``white`` (ids) grown over their pale cytoplasm.

    A lymphocyte's or neutrophil's cytoplasm is pale lilac, often under the red-cell threshold,
    so the object was its nucleus alone. Its cytoplasm is the stained pixels (above the glass
    noise) on no other object that join the cell without crossing the glass, at most one red-cell
    radius out (a white cell is at most about twice a red cell across).
    """
    if white.size == 0:
        return labels
    density = stain_density(erase_marks(rgb, marks))
    stained = (density > robust_threshold(density)[2]) & ~marks
    del density
    out = labels.copy()
    boxes = ndimage.find_objects(labels)
    pad = int(np.ceil(radius))
    for cell in white:  # one window per white cell: a tile holds few, the smear may be large
        rows, cols = boxes[cell - 1]
        window = (slice(max(0, rows.start - pad), rows.stop + pad),
                  slice(max(0, cols.start - pad), cols.stop + pad))
        here = out[window]
        body = here == cell
        room = ((here == 0) & stained[window]
                & (ndimage.distance_transform_edt(~body) <= radius))
        grown = watershed(np.zeros(body.shape, np.uint8), body.astype(np.int32),
                          mask=room | body)
        here[room & (grown > 0)] = cell
    return out


def separate_platelets(labels: np.ndarray, rgb: np.ndarray, purple: np.ndarray,
                       cell_area: float) -> np.ndarray:
    """Small purple bodies on the glass or at a cell's edge become objects of their own.

    Platelets stain like chromatin but are a tenth of a red cell; the threshold drops them as
    specks or joins them to the red cell they touch. A purple body wholly inside a red cell (an
    inclusion) stays in it; a body at a cell's edge is a platelet on it. What surrounds the body
    tells them apart: an inclusion is ringed by haemoglobin (dense in green, pink: its red/blue
    density ratio under the nuclear one), while a platelet's ring is glass or its own lilac
    hyalomere, which the hysteresis threshold often joins to the neighbouring cell's object (so
    the ring's label alone would call it inside).
    """
    blobs, n = ndimage.label(ndimage.binary_opening(purple, iterations=1))
    if n == 0:
        return labels
    sizes = np.bincount(blobs.ravel(), minlength=n + 1)
    n_obj = int(labels.max())
    areas = np.bincount(labels.ravel(), minlength=n_obj + 1)
    nuclear = np.bincount(labels.ravel(), weights=purple.ravel(), minlength=n_obj + 1)
    white = nuclear >= WBC_NUCLEUS * cell_area
    white[0] = False  # the glass holds every free platelet's pixels: it is no white cell
    red, green, blue = _densities(rgb, drawn_marks(rgb))
    inside = labels > 0
    ratio = red / np.maximum(blue, 0.02)
    haemoglobin = (inside & (green > RING_GREEN * float(np.median(green[inside])))
                   & (ratio < NUCLEUS_RATIO * float(np.median(ratio[inside]))))
    out = labels.copy()
    next_id = n_obj + 1
    for index, box in enumerate(ndimage.find_objects(blobs), start=1):
        if not PLATELET_MIN * cell_area <= sizes[index] < PLATELET_AREA * cell_area:
            continue
        window = tuple(slice(max(0, s.start - 3), s.stop + 3) for s in box)
        blob = blobs[window] == index
        hosts = labels[window][blob]
        if white[hosts].any():
            continue
        host = int(np.bincount(hosts).argmax())
        if host and areas[host] < PLATELET_AREA * cell_area:
            continue  # already an object of its own size
        ring = ndimage.binary_dilation(blob, iterations=2) & ~blob
        on_glass = float((~haemoglobin[window][ring]).mean()) if ring.any() else 0.0
        if host and on_glass < PLATELET_EDGE:
            continue  # an inclusion inside a cell
        out[window][blob] = next_id
        next_id += 1
    return out


def purple_objects(labels: np.ndarray, rgb: np.ndarray, marks: np.ndarray,
                   areas: np.ndarray) -> np.ndarray:
    """Boolean per label id: the object's hue as a whole is purple, not pink (module docstring).

    The hue is the object's mean red density over its mean blue density (each against its own
    glass, so white balance cancels), judged against the median over the smear's objects, which
    are mostly red cells: stains and cameras shift it, the gap between haemoglobin and chromatin
    or platelet granules stays.
    """
    n = areas.size - 1
    rgb = erase_marks(rgb, marks)
    flat = labels.ravel()
    red = np.bincount(flat, weights=channel_density(rgb, 0).ravel(), minlength=n + 1)
    blue = np.bincount(flat, weights=channel_density(rgb, 2).ravel(), minlength=n + 1)
    hue = red / np.maximum(blue, 1e-3 * np.maximum(areas, 1))
    present = areas > 0
    present[0] = False
    if not present.any():
        return np.zeros(n + 1, bool)
    out = hue > PURPLE_HUE * float(np.median(hue[present]))
    out[0] = False
    return out


def object_kinds(labels: np.ndarray, rgb: np.ndarray, radius: float | None = None) -> np.ndarray:
    """Kind of every label id (index = id; index 0, the background, is '')."""
    n = int(labels.max())
    kinds = np.full(n + 1, "", dtype=object)
    if n == 0:
        return kinds
    marks = drawn_marks(rgb)
    areas = np.bincount(labels.ravel(), minlength=n + 1).astype(float)
    nuclear = np.bincount(labels.ravel(), weights=nuclear_pixels(rgb, labels, marks).ravel(),
                          minlength=n + 1)
    cell_area = _cell_area(labels, radius)
    kinds[1:] = "rbc"
    kinds[1:][areas[1:] < SPECK_AREA * cell_area] = "other"
    small = (areas < PLATELET_AREA * cell_area) & (nuclear > 0.3 * areas)
    purple = purple_objects(labels, rgb, marks, areas) & (areas >= PLATELET_MIN * cell_area)
    kinds[small | purple] = "platelet"
    nucleated = nuclear >= WBC_NUCLEUS * cell_area
    large = areas >= WBC_AREA * cell_area
    kinds[nucleated & large] = "wbc"
    kinds[nucleated & ~large] = "platelet"  # a purple body smaller than any white cell: a clump
    kinds[_drawn_ids(labels, marks)] = "other"
    kinds[0] = ""
    return kinds
