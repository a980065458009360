"""The cell-colour overlay of a session: one PCA over the cells of every open smear, in words.

Colours come from :func:`napari_reddino.embed.cell_overlay.cell_colours` on the cells' matrix in
one of the explorer's spaces (:func:`~napari_reddino.explore.spaces.space_matrix`), fitted on
the counted red cells (a white cell or a clump would take a colour to itself) and applied to
every object. Each colour is then named by the morphology features that correlate most with
its component over those cells, in the words the markers use ("red: larger, paler in the
center"), so the overlay reads as morphology, not as three anonymous axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.embed.cell_overlay import (
    CHANNELS,
    CellColours,
    cell_colours,
    correlated_features,
)
from napari_reddino.explore.markers import WORDS
from napari_reddino.explore.spaces import resolve_space, space_matrix
from napari_reddino.morphology.features import BY_NAME, COLUMN_PREFIX, feature_columns

#: words for features the markers leave unnamed (they say the same as a named one there)
MORE_WORDS = {
    "perimeter": ("larger", "smaller"),
    "equivalent_diameter": ("larger", "smaller"),
    "major_axis": ("longer", "shorter"),
    "minor_axis": ("wider", "narrower"),
    "feret_diameter": ("larger", "smaller"),
    "eccentricity": ("more elongated", "rounder"),
    "convexity": ("smoother in outline", "crenated"),
    "extent": ("filling their box (round or square)", "irregular or elongated"),
    "boundary_curvature": ("with a bent outline", "with a smooth outline"),
    "fourier_2": ("oval", "round"),
    "ring_1": ("with a dark rim", "with a pale rim"),
    "ring_2": ("with a darker outer ring", "with a paler outer ring"),
    "ring_3": ("with a darker middle ring", "with a paler middle ring"),
    "ring_4": ("with a darker inner ring", "with a paler inner ring"),
    "ring_5": ("with a stained center", "with a pale center"),
    "pallor_offset": ("with an off-center pallor", "with a centered pallor"),
    "od_r": ("more densely stained", "paler"),
    "od_g": ("more densely stained (haemoglobin)", "paler (less haemoglobin)"),
    "od_b": ("more densely stained", "paler"),
    "od_integrated": ("holding more haemoglobin", "holding less haemoglobin"),
    "od_std": ("unevenly stained", "evenly stained"),
    "mean_r": ("lighter (red channel)", "darker (red channel)"),
    "mean_g": ("lighter", "darker"),
    "mean_b": ("bluer or lighter", "less blue"),
    "std_r": ("unevenly stained", "evenly stained"),
    "std_g": ("unevenly stained", "evenly stained"),
    "std_b": ("unevenly stained", "evenly stained"),
    "glcm_contrast": ("mottled", "smoothly stained"),
    "glcm_energy": ("evenly stained", "mottled"),
    "lbp_irregular": ("grainy", "smooth in texture"),
    "lbp_entropy": ("grainy", "smooth in texture"),
    "lbp_spots": ("spotted (bright or dark specks)", "without specks"),
    "saturation": ("more saturated in color", "greyer in color"),
    "glcm_entropy": ("mottled", "smoothly stained"),
    "glcm_homogeneity": ("smoothly stained", "mottled"),
    "dark_dot_fraction": ("with more inclusions", "with fewer inclusions"),
}


@dataclass
class SessionColours:
    """Colours of the gathered cells (rows of the table) and the legend's lines."""

    colours: CellColours
    legend: list[str]  # one line per channel: "red: larger, paler in the center"
    correlations: list[pd.DataFrame]  # per channel: feature, r (strongest first)
    space: str


def feature_words(feature: str, r: float) -> str:
    """What a higher component means for ``feature`` with correlation ``r``, in words."""
    pair = WORDS.get(feature) or MORE_WORDS.get(feature)
    if pair is None:
        spec = BY_NAME.get(feature)
        what = spec.definition.split(" (")[0] if spec else feature.replace("_", " ")
        return f"{'higher' if r > 0 else 'lower'} {what}"
    return pair[0] if r > 0 else pair[1]


def legend_lines(correlations: list[pd.DataFrame], n_words: int = 2) -> list[str]:
    """One line per channel: the words of its strongest distinct features, and their r."""
    lines = []
    for channel, ranked in zip(CHANNELS, correlations):
        words, numbers = [], []
        for row in ranked.itertuples():
            name = row.feature.removeprefix(COLUMN_PREFIX)
            word = feature_words(name, row.r)
            if word.split(" (")[0] not in {w.split(" (")[0] for w in words}:  # said already
                words.append(word)
                numbers.append(f"{name} r={row.r:+.2f}")
            if len(words) == n_words:
                break
        lines.append(f"{channel}: {', '.join(words) or 'no morphology feature'}"
                     f" ({'; '.join(numbers)})" if numbers else f"{channel}: (no morphology)")
    return lines


def session_colours(table: pd.DataFrame, vectors: np.ndarray, space: str,
                    fit_on: np.ndarray | None = None, top: int = 6) -> SessionColours:
    """Colours for every row of ``table`` (one row per cell, ``vectors`` aligned with it, as in
    a ``LayerCells``), fitted on ``fit_on`` (default: the ``counted`` cells when the table says,
    else all), and the legend from the ``morph_*`` columns."""
    if fit_on is None:
        fit_on = (table[nm.COUNTED].fillna(False).astype(bool).to_numpy()
                  if nm.COUNTED in table.columns else np.ones(len(table), bool))
        if fit_on.sum() < 4:  # too few counted cells: every object
            fit_on = np.ones(len(table), bool)
    space = resolve_space(space, table, vectors)  # the default falls back as the explorer's
    matrix = space_matrix(table, vectors, space, row_column=None)
    colours = cell_colours(matrix, fit_on)
    morph = feature_columns(table.columns)
    correlations = (correlated_features(colours.scores, table[morph], top=top,
                                        rows=colours.fitted) if morph else [])
    return SessionColours(colours, legend_lines(correlations) if morph else [], correlations,
                          space)
