"""Which rows take part in propagation, review, suggestions and counts: the ``counted_only`` switch.

One helper so that every entry point (``rd.tl``, the CLI's ``--all-objects``, the docks, the
report) reads the same rows: the counted cells of :mod:`napari_reddino.segment.counted` by
default (``DEFAULTS.counted_only``), every object when the switch is off.

Labels on objects that are not counted (cut by the border, clumps, white cells, excluded by
hand) are kept as the user put them, but they neither vote nor are counted: such an object's
outline is not a whole red cell's, so as a reference it would teach the vote a partial shape, and
a differential counts intact red cells only. Removing them would lose work a user may want back
when they include the object again.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.cell_table import unlabeled_mask
from napari_reddino.names import MANUAL
from napari_reddino.segment.counted import counted_mask

ALL_OBJECTS_HINT = "or use every object (counted_only=False; --all-objects on the command line)"


def counted_rows(table: pd.DataFrame, counted_only: bool = DEFAULTS.counted_only) -> np.ndarray:
    """Boolean mask of the rows that take part: the counted cells, every row when off."""
    if not counted_only:
        return np.ones(len(table), bool)
    return counted_mask(table)


def voting_rows(classes, counted) -> np.ndarray:
    """Row indices propagation runs on (the counted ones); a clear error when none votes."""
    counted = np.asarray(counted, bool)
    labeled = ~unlabeled_mask(classes)
    if len(counted) != len(labeled):
        raise ValueError(f"counted has {len(counted)} entries but there are {len(labeled)} cells")
    if not counted.any():
        raise ValueError(f"none of the {len(counted)} objects is counted (intact red cells); "
                         + ALL_OBJECTS_HINT)
    if labeled.any() and not (labeled & counted).any():
        raise ValueError(
            f"none of the {int(labeled.sum())} labeled object(s) is counted (they are cut by "
            "the border, not red cells, clumps or excluded by hand), so none can vote: label "
            "intact red cells, " + ALL_OBJECTS_HINT)
    return np.flatnonzero(counted)


def expand(sub, classes, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(classes, confidence, source)`` of every row from the result ``sub`` of ``rows``.

    Rows outside ``rows`` keep a manual label (confidence 1, source manual) and otherwise get
    no class (``None``, confidence NaN, source ``None``).
    """
    classes = np.asarray(classes, dtype=object)
    labeled = ~unlabeled_mask(classes)
    out = np.where(labeled, classes, None).astype(object)
    confidence = np.where(labeled, 1.0, np.nan).astype(np.float32)
    source = np.where(labeled, MANUAL, None).astype(object)
    out[rows], confidence[rows], source[rows] = sub.classes, sub.confidence, sub.source
    return out, confidence, source
