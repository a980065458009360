"""Which segmented objects count: one definition used by every number a hematologist reads.

A differential is a share of intact red cells. Objects cut by the image border (their shape and
size are unknown), white cells, platelets, debris and drawn marks, objects far larger than the
smear's typical red cell (merged cells, clumps) and objects a user excluded by hand are kept in
the table and on screen but not counted: counts, propagation targets, the review queue,
suggestions, the explorer's default view, the report and the exports all read
:func:`counted_mask`. A label a user puts on an excluded object is kept; it is only not counted.

Works on any cell table: missing columns (``kind``, ``touches_border``, ``area``,
``excluded``) simply do not exclude anything, so older tables count every object.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS

#: objects larger than this many times the smear's median red cell are not plausible single cells
MAX_AREA_RATIO = DEFAULTS.max_area_ratio

BORDER = "cut by the image border"
EXCLUDED_BY_HAND = "excluded by hand"
NOT_RBC = {"wbc": "white cell", "platelet": "platelet", "other": "debris or drawn mark"}


def _too_large(table: pd.DataFrame, max_area_ratio: float) -> np.ndarray:
    """Ratio of each object's area to its smear's median red-cell area (NaN where unknown)."""
    if nm.AREA not in table.columns or not len(table):
        return np.full(len(table), np.nan)
    area = table[nm.AREA].to_numpy(dtype=float)
    rbc = (table[nm.KIND].astype(str) == "rbc").to_numpy() if nm.KIND in table.columns \
        else np.ones(len(table), bool)
    whole = rbc & ~_flag(table, nm.TOUCHES_BORDER)
    groups = table[nm.IMAGE].astype(str).to_numpy() if nm.IMAGE in table.columns \
        else np.zeros(len(table), dtype=str)
    ratio = np.full(len(table), np.nan)
    for image in np.unique(groups):
        rows = groups == image
        reference = area[rows & whole] if (rows & whole).any() else area[rows]
        median = float(np.median(reference)) if len(reference) else np.nan
        if median > 0:
            ratio[rows] = area[rows] / median
    return ratio


def _flag(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        return np.zeros(len(table), bool)
    return table[column].fillna(False).astype(bool).to_numpy()


def exclusion_reasons(table: pd.DataFrame, max_area_ratio: float = MAX_AREA_RATIO) -> pd.Series:
    """Why each object is not counted (``""`` for counted cells), in words for hover and exports.

    The first reason that applies is given: excluded by hand, not a red cell, cut by the border,
    implausibly large.
    """
    reasons = np.full(len(table), "", dtype=object)
    ratio = _too_large(table, max_area_ratio)
    large = np.nan_to_num(ratio, nan=0.0) > max_area_ratio
    for i in np.flatnonzero(large)[::-1]:
        reasons[i] = f"{ratio[i]:.1f}x the smear's typical red cell"
    reasons[_flag(table, nm.TOUCHES_BORDER)] = BORDER
    if nm.KIND in table.columns:
        kinds = table[nm.KIND].astype(str).to_numpy()
        for kind, reason in NOT_RBC.items():
            reasons[kinds == kind] = reason
    reasons[_flag(table, nm.EXCLUDED)] = EXCLUDED_BY_HAND
    return pd.Series(reasons, index=table.index, name=nm.NOT_COUNTED_REASON, dtype=object)


def counted_mask(table: pd.DataFrame, max_area_ratio: float = MAX_AREA_RATIO) -> np.ndarray:
    """Boolean array, True for the objects that count (intact, plausible red cells)."""
    return (exclusion_reasons(table, max_area_ratio) == "").to_numpy()


def add_counted(table: pd.DataFrame, max_area_ratio: float = MAX_AREA_RATIO) -> pd.DataFrame:
    """A copy of ``table`` with the ``counted`` (bool) and ``not_counted_reason`` columns."""
    out = table.copy()
    reasons = exclusion_reasons(out, max_area_ratio)
    out[nm.NOT_COUNTED_REASON] = reasons.to_numpy()
    out[nm.COUNTED] = (reasons == "").to_numpy()
    return out


def counted_summary(table: pd.DataFrame, max_area_ratio: float = MAX_AREA_RATIO) -> str:
    """``"N of M objects counted"`` for the docks and the CLI."""
    return f"{int(counted_mask(table, max_area_ratio).sum())} of {len(table)} objects counted"
