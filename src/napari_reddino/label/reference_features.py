"""The inputs of the reference model: morphology columns, absolute and relative to their smear.

Why relative columns: stain, illumination and focus change from smear to smear, so a color or
texture number means something only against the smear's own red cells (stain normalization);
a cell's size against its smear's typical cell is what "macrocyte" means on a slide. Absolute
columns keep what a whole smear shares (a smear of spherocytes). Which mix generalizes to new
smears was measured with whole smears held out (benchmarks/reference_model.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.morphology.features import FAMILIES, FEATURES, feature_columns

#: absolute: the morph_* columns as measured; smear: each column centered on its smear's median
#: counted cell and scaled by its spread; absolute+smear: both; absolute+stain: absolute size,
#: shape and pallor columns, color / texture / inclusion columns relative to the smear
FEATURE_MODES = ("absolute", "smear", "absolute+smear", "absolute+stain")
#: families whose numbers depend on the stain and the camera
STAIN_FAMILIES = FAMILIES[2:]
#: smears with fewer counted cells than this take their statistics from all their objects
MIN_CELLS = 5


def morphology_columns(table: pd.DataFrame) -> list[str]:
    """The table's ``morph_*`` columns in registry order."""
    return feature_columns(table.columns)


def _stain_columns(columns) -> set[str]:
    return {f.column for f in FEATURES if f.family in STAIN_FAMILIES and f.column in columns}


def spread_floor(table: pd.DataFrame, columns: list[str], counted=None) -> np.ndarray:
    """Per column, the smallest spread a smear may have: a quarter of the column's standard
    deviation over all (counted) cells, so a column flat within a smear (no dark dots in most
    cells) does not turn one dot into a million. A model keeps the floors of its training
    cells, so a new table is scaled as those were."""
    x = table[columns].to_numpy(np.float64)
    if counted is not None and np.asarray(counted, bool).sum() >= MIN_CELLS:
        x = x[np.asarray(counted, bool)]
    std = np.nan_to_num(np.nanstd(x, axis=0)) if len(x) else np.zeros(len(columns))
    return np.maximum(0.25 * std, 1e-6)


def smear_relative(table: pd.DataFrame, columns: list[str], counted=None,
                   floor=None) -> np.ndarray:
    """``(x - smear median) / smear spread`` per column, statistics over each smear's counted
    cells (``counted``: bool per row; None: all rows). Spread: IQR / 1.349, at least ``floor``
    (default: :func:`spread_floor` of ``table``)."""
    x = table[columns].to_numpy(np.float64)
    counted = np.ones(len(table), bool) if counted is None else np.asarray(counted, bool)
    images = table[nm.IMAGE].astype(str).to_numpy() if nm.IMAGE in table.columns \
        else np.zeros(len(table), dtype=str)
    floor = spread_floor(table, columns, counted) if floor is None else np.asarray(floor)
    out = np.empty_like(x)
    for image in np.unique(images):
        rows = images == image
        ref = x[rows & counted] if (rows & counted).sum() >= MIN_CELLS else x[rows]
        median = np.nanmedian(ref, axis=0)
        spread = (np.nanpercentile(ref, 75, axis=0) - np.nanpercentile(ref, 25, axis=0)) / 1.349
        spread = np.maximum(np.nan_to_num(spread), floor)
        out[rows] = (x[rows] - np.nan_to_num(median)) / spread
    return out


def reference_features(table: pd.DataFrame, columns: list[str], mode: str,
                       counted=None, floor=None) -> tuple[np.ndarray, list[str]]:
    """The (N, D) input matrix of ``mode`` (see ``FEATURE_MODES``) and its column names
    (``floor``: the smallest per-smear spread of each column, see :func:`spread_floor`)."""
    if mode not in FEATURE_MODES:
        raise ValueError(f"unknown feature mode {mode!r}; choose one of {FEATURE_MODES}")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the cell table lacks the model's input columns {missing[:5]}"
                         f"{' ...' if len(missing) > 5 else ''}: measure morphology first")
    absolute = table[columns].to_numpy(np.float64)
    if mode == "absolute":
        return absolute, list(columns)
    relative = smear_relative(table, columns, counted, floor)
    rel_names = [f"{c}@smear" for c in columns]
    if mode == "smear":
        return relative, rel_names
    if mode == "absolute+smear":
        return np.hstack([absolute, relative]), list(columns) + rel_names
    stain = _stain_columns(columns)
    keep = np.array([c in stain for c in columns])
    mixed = np.where(keep[None, :], relative, absolute)
    return mixed, [f"{c}@smear" if c in stain else c for c in columns]
