"""Per-point colors for a features column: palette + legend, or a colormap + range.

Categorical columns (text, category, bool, or integers with few distinct values such as
``cluster``) get one palette color per value; numeric columns go through a napari
colormap between their 2nd and 98th percentile. Vectorized: no loop over cells.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from napari.utils.colormaps import ensure_colormap
from napari.utils.colormaps.standardize_color import transform_color

from napari_reddino.label.classes import default_colors

# categories (clusters, classes without a pinned color): the colour-blind-safe class colors
# first (label.classes.CVD_SAFE_COLORS), then tab10 / tab20 shades for more than 13 values
PALETTE = tuple(default_colors(20))
MISSING = (0.45, 0.45, 0.45, 0.5)
NOISE = (0.3, 0.3, 0.3, 0.6)
MAX_CATEGORIES = 40


@dataclass
class Coloring:
    """RGBA per point plus what the legend shows."""

    rgba: np.ndarray  # (N, 4) float32
    categories: dict[str, tuple] = field(default_factory=dict)  # value -> color
    value_range: tuple[float, float] | None = None  # numeric columns
    colormap: str = ""


def is_categorical(series: pd.Series) -> bool:
    """Text / category / bool, or integers with few values (cluster ids)."""
    if isinstance(series.dtype, pd.CategoricalDtype) or series.dtype.kind in "bOSU":
        return True
    if pd.api.types.is_string_dtype(series.dtype):
        return True
    return series.dtype.kind in "iu" and series.nunique() <= MAX_CATEGORIES


def color_by(
    series: pd.Series, *, fixed: Mapping[str, object] | None = None, colormap: str = "viridis"
) -> Coloring:
    """Color one value per point; ``fixed`` pins colors for known values (class colors)."""
    n = len(series)
    if n == 0:
        return Coloring(np.zeros((0, 4), np.float32))
    if series.name == "cluster" and series.dtype.kind in "iuf":  # ids: never a ramp
        series = pd.to_numeric(series, errors="coerce").astype("Int64").astype(object)
        series = series.where(series.notna(), None)
        return _categorical(series, fixed or {})
    if is_categorical(series):
        return _categorical(series, fixed or {})
    values = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
    finite = np.isfinite(values)
    rgba = np.tile(np.asarray(MISSING, np.float32), (n, 1))
    if not finite.any():
        return Coloring(rgba, value_range=(np.nan, np.nan), colormap=colormap)
    low, high = np.percentile(values[finite], [2, 98])
    scaled = np.clip((values[finite] - low) / max(high - low, 1e-12), 0, 1)
    rgba[finite] = ensure_colormap(colormap).map(scaled)
    return Coloring(rgba, value_range=(float(low), float(high)), colormap=colormap)


def _categorical(series: pd.Series, fixed: Mapping[str, object]) -> Coloring:
    missing = series.isna().to_numpy()
    text = series.astype(object).where(~missing, "").astype(str).to_numpy()
    values = sorted(set(text[~missing]), key=_natural_key)
    lookup = {}
    free = iter(PALETTE * (len(values) // len(PALETTE) + 1))
    for value in values:
        if value in fixed:
            lookup[value] = tuple(transform_color(fixed[value])[0])
        elif value == "-1":
            lookup[value] = NOISE
        else:
            lookup[value] = tuple(transform_color(next(free))[0])
    table = np.array([lookup[v] for v in values] + [MISSING], dtype=np.float32)
    codes = pd.Categorical(text, categories=values).codes.astype(np.int64)
    codes[codes < 0] = len(values)
    rgba = table[codes]
    return Coloring(rgba, categories=lookup)


def _natural_key(value: str):
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)
