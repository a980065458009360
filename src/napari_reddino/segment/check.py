"""Per-object columns of the cell table (``kind``, ``touches_border``) and a smear-level check.

The check exists because a segmentation can fail quietly: a threshold pulled up by one nucleus once
turned a whole smear into a single object and every tool called it done. Comparing the area the
objects cover with the stained area of the smear catches that without any truth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_reddino.segment.classical import MIN_STAIN_OD, robust_threshold, stain_density
from napari_reddino.segment.kind import object_kinds

KIND = "kind"
TOUCHES_BORDER = "touches_border"
MIN_COVERED = 0.5  # objects should cover at least this share of the clearly stained area
MIN_STAINED_CELLS = 8  # ... checked only when the stained area is worth this many cells
FAR_LARGER = 5.0  # an object over this x the median whole red cell is no cell (a white cell is
# at most ~4x: 15 um across against 7.5 um); it is a merge, a clump or a mark taken for a cell


@dataclass
class SegmentationResult:
    """Instance labels (H, W) int32, their cell table and a warning when the result looks wrong.

    The table is ``io.cell_table.region_features`` plus ``kind`` (rbc/wbc/platelet/other) and
    ``touches_border``; ``warning`` is None or a sentence for the user
    (:func:`plausibility_warning`).
    """

    labels: np.ndarray
    features: pd.DataFrame
    warning: str | None = None


def border_ids(labels: np.ndarray) -> np.ndarray:
    """Label ids with a pixel on the image border."""
    edge = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    ids = np.unique(edge)
    return ids[ids > 0]


def add_object_columns(features: pd.DataFrame, labels: np.ndarray, rgb: np.ndarray,
                       kinds: np.ndarray | None = None) -> pd.DataFrame:
    """The table with ``kind`` (rbc/wbc/platelet/other) and ``touches_border`` (bool) columns."""
    features = features.copy()
    ids = features["label"].to_numpy(np.int64)
    kinds = object_kinds(labels, rgb) if kinds is None else kinds
    features[KIND] = kinds[ids] if len(ids) else pd.Series(dtype=str)
    features[TOUCHES_BORDER] = np.isin(ids, border_ids(labels))
    return features


def coverage_counts(labels: np.ndarray, rgb: np.ndarray, kinds: np.ndarray,
                    core=(slice(None), slice(None)), density=None) -> tuple[int, int]:
    """(clearly stained pixels, of which in red cells) inside ``core`` (a window of the image)."""
    density = stain_density(rgb) if density is None else density
    if float(density.max()) < MIN_STAIN_OD:  # empty glass
        return 0, 0
    _, high, _ = robust_threshold(density)
    stained = (density > high)[core]
    red = (kinds[labels] == "rbc")[core]
    return int(stained.sum()), int((stained & red).sum())


def coverage_warning(n_stained: int, n_covered: int, rbc_areas: np.ndarray,
                     n_pixels: int) -> str | None:
    """The sentence for the user when the red cells cover too little of the stained area."""
    n_red = len(rbc_areas)
    typical = float(np.median(rbc_areas)) if n_red else 0
    cell_area = typical if n_red >= 5 else 0.005 * n_pixels  # a guess when few cells exist
    if n_stained < MIN_STAINED_CELLS * cell_area:
        return None
    covered = float(n_covered) / n_stained
    if covered >= MIN_COVERED:
        return None
    return (f"only {100 * covered:.0f} % of the stained area lies in the {n_red} red cells found "
            f"(expected most of it): the segmentation may have failed on this smear (a nucleus, "
            f"debris or uneven stain can mislead the threshold); check it, or try cellpose")


def oversize_warning(areas: np.ndarray, kinds: np.ndarray, whole: np.ndarray) -> str | None:
    """The sentence for the user when objects are far larger than the smear's typical red cell.

    ``areas``, ``kinds`` and ``whole`` (not cut by the border) are per object, in any order.
    """
    red = areas[(kinds == "rbc") & whole]
    if len(red) < 5:
        return None
    typical = float(np.median(red))
    giants = (areas > FAR_LARGER * typical) & (kinds != "other")
    if not giants.any():
        return None
    return (f"{int(giants.sum())} object(s) are over {FAR_LARGER:g}x the smear's typical red "
            f"cell ({typical:.0f} px): merged cells, a clump, or a white cell that took its "
            f"neighbors; check them")


def join_warnings(*warnings: str | None) -> str | None:
    """The warnings given, as one text, or None."""
    given = [w for w in warnings if w]
    return "; ".join(given) if given else None


def plausibility_warning(labels: np.ndarray, rgb: np.ndarray, kinds: np.ndarray) -> str | None:
    """A sentence when the red cells found cover too little of the stained smear or objects
    are far larger than its typical red cell, else None."""
    n_stained, n_covered = coverage_counts(labels, rgb, kinds)
    all_areas = np.bincount(labels.ravel(), minlength=len(kinds))
    areas = all_areas[1:][kinds[1:] == "rbc"]
    whole = np.ones(len(kinds), bool)
    whole[border_ids(labels)] = False
    return join_warnings(coverage_warning(n_stained, n_covered, areas, labels.size),
                         oversize_warning(all_areas[1:], kinds[1:], whole[1:]))
