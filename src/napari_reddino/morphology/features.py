"""Interpretable morphology of every red cell: numbers a hematologist can name.

Why beside the embedding: the backbone sees every cell rescaled to one crop size, so absolute
size (macro-/microcytes) and stain density leave it; these features keep them. Families follow
RedTell (marrlab): size and shape, central pallor, color and stain, texture, inclusions.
:data:`FEATURES` names each one with its family, unit and a one-line definition (the table in
``docs/morphology.md`` is generated from it). All cells of a smear are measured together
(bincount over the cell pixels, skimage region properties): a 4096² smear takes seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_reddino.morphology import shape as _shape
from napari_reddino.morphology import stain as _stain

#: Prefix of the morphology columns in the cell table (``morph_area`` ...).
COLUMN_PREFIX = "morph_"
FAMILIES = ("size and shape", "central pallor", "color and stain", "texture", "inclusions")


@dataclass(frozen=True)
class Feature:
    """One morphology number: ``unit`` is in pixels (``px``, ``px²``); µm with a pixel size."""

    name: str
    family: str
    unit: str
    definition: str

    def unit_for(self, pixel_size: float | None) -> str:
        """The unit with ``px`` replaced by ``µm`` when the pixel size is known."""
        return self.unit.replace("px", "µm") if pixel_size else self.unit

    @property
    def column(self) -> str:
        return COLUMN_PREFIX + self.name


_S, _P, _C, _T, _I = FAMILIES
FEATURES: tuple[Feature, ...] = tuple(Feature(*row) for row in (
    ("area", _S, "px²", "area of the cell"),
    ("perimeter", _S, "px", "length of the cell's outline"),
    ("equivalent_diameter", _S, "px", "diameter of the disc with the cell's area"),
    ("major_axis", _S, "px", "long axis of the ellipse with the cell's second moments"),
    ("minor_axis", _S, "px", "short axis of that ellipse"),
    ("feret_diameter", _S, "px", "largest distance between two points of the outline"),
    ("elongation", _S, "", "major / minor axis (1 = round; ovalocytes, elliptocytes > 1.3)"),
    ("eccentricity", _S, "", "eccentricity of the ellipse (0 = circle, 1 = line)"),
    ("circularity", _S, "", "4π area / perimeter² (1 = disc, low for spiky or irregular cells)"),
    ("convexity", _S, "", "perimeter of the convex hull / perimeter (low = crenated outline)"),
    ("solidity", _S, "", "area / convex hull area (low = notches, bites, fragments)"),
    ("extent", _S, "", "area / bounding box area"),
    ("radius_cv", _S, "", "spread of the center-to-edge radius over angle / its mean"),
    ("boundary_curvature", _S, "", "mean absolute bending of the radius profile, per radian"),
    ("spicule_count", _S, "count", "outward spikes of the outline (burr cells, acanthocytes)"),
    ("tail_ratio", _S, "", "longest radius / mean radius (a teardrop's tail)"),
    ("asymmetry", _S, "", "mean |R(θ) - R(θ+π)| / mean radius (fragments, teardrops)"),
    ("fourier_2", _S, "", "2nd harmonic of the radius profile / mean (oval shape)"),
    ("fourier_3", _S, "", "3rd harmonic (triangular shape, helmet cells)"),
    ("fourier_4", _S, "", "4th harmonic (square-ish shape)"),
    ("fourier_5", _S, "", "5th harmonic"),
    ("fourier_high", _S, "", "harmonics 6 and up together (fine outline roughness)"),
    ("ring_1", _P, "", "stain of the outermost fifth of the cell (rim) / cell's mean stain"),
    ("ring_2", _P, "", "stain of the 2nd ring from the rim / cell's mean stain"),
    ("ring_3", _P, "", "stain of the middle ring / cell's mean stain"),
    ("ring_4", _P, "", "stain of the 4th ring / cell's mean stain"),
    ("ring_5", _P, "", "stain of the center / cell's mean stain"),
    ("pallor_rim_ratio", _P, "", "center stain / rim stain (< 1: central pallor; ~1 spherocyte)"),
    ("pallor_fraction", _P, "", "share of the cell paler than 0.6 x the rim's stain"),
    ("pallor_elongation", _P, "", "long / short axis of the pale area (a slit: stomatocyte)"),
    ("pallor_offset", _P, "", "distance of the pale area's center from the cell's / radius"),
    ("target_score", _P, "", "(center stain - palest middle ring) / rim stain (> 0: target)"),
    ("mean_r", _C, "0-255", "mean red value"),
    ("mean_g", _C, "0-255", "mean green value"),
    ("mean_b", _C, "0-255", "mean blue value"),
    ("std_r", _C, "0-255", "spread of red values"),
    ("std_g", _C, "0-255", "spread of green values"),
    ("std_b", _C, "0-255", "spread of blue values"),
    ("od_r", _C, "OD", "mean optical density of the red channel (log10 glass / cell)"),
    ("od_g", _C, "OD", "mean optical density of the green channel (haemoglobin absorbs here)"),
    ("od_b", _C, "OD", "mean optical density of the blue channel"),
    ("od_mean", _C, "OD", "mean optical density of the cell (stain density, hypochromia: low)"),
    ("od_std", _C, "OD", "spread of optical density inside the cell"),
    ("od_integrated", _C, "OD·px²", "optical density summed over the cell (haemoglobin content)"),
    ("hue", _C, "°", "hue of the cell's mean color"),
    ("saturation", _C, "", "saturation of the cell's mean color"),
    ("glcm_contrast", _T, "", "GLCM contrast of 8 stain levels (local stain jumps)"),
    ("glcm_homogeneity", _T, "", "GLCM homogeneity (smooth stain: high)"),
    ("glcm_energy", _T, "", "GLCM energy (few stain levels: high)"),
    ("glcm_correlation", _T, "", "GLCM correlation of neighboring stain levels"),
    ("glcm_entropy", _T, "", "GLCM entropy (mottled stain: high)"),
    ("lbp_entropy", _T, "", "entropy of the local binary pattern histogram"),
    ("lbp_spots", _T, "", "share of pixels that are a local bright or dark spot (LBP)"),
    ("lbp_irregular", _T, "", "share of pixels with a non-uniform LBP (grainy texture)"),
    ("dark_dot_count", _I, "count", "dark dots inside the cell (inclusions, parasites, stippling)"),
    ("dark_dot_fraction", _I, "", "share of the cell covered by dark dots"),
))
FEATURE_NAMES = tuple(f.name for f in FEATURES)
BY_NAME = {f.name: f for f in FEATURES}


def feature_columns(columns) -> list[str]:
    """The morphology columns present in a cell table, in registry order."""
    present = set(columns)
    return [f.column for f in FEATURES if f.column in present]


def morphology_features(labels, image, *, pixel_size: float | None = None,
                        prefix: str = "") -> pd.DataFrame:
    """One row per cell (ascending ``label``) with every feature of :data:`FEATURES`.

    ``pixel_size`` (µm per pixel) turns lengths into µm and areas into µm². ``prefix`` is put
    before the feature names (``COLUMN_PREFIX`` for the cell table); ``label`` keeps its name.
    """
    labels = np.asarray(labels)
    image = np.asarray(image)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[:2] != labels.shape or image.shape[2] < 3:
        raise ValueError(f"image {image.shape} must be (H, W, 3) matching labels {labels.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB, got {image.dtype}")
    if pixel_size is not None and not pixel_size > 0:
        raise ValueError(f"pixel_size must be a positive number of µm, got {pixel_size}")
    image = image[..., :3]
    ids = np.unique(labels)
    ids = ids[ids > 0]
    n = len(ids)
    if n == 0:
        return pd.DataFrame({"label": pd.Series(dtype=np.int64),
                             **{prefix + name: pd.Series(dtype=float) for name in FEATURE_NAMES}})
    lookup = np.zeros(int(ids.max()) + 1, np.int64)
    lookup[ids] = np.arange(1, n + 1)
    lab = lookup[np.where(labels > 0, labels, 0)]  # compact ids 1..n
    fg = lab > 0
    idx = lab[fg] - 1
    yy, xx = (v.astype(np.float64) for v in np.nonzero(fg))
    profile, cy, cx, depth = _shape.polar_profile(idx, yy, xx, n)
    values = _shape.shape_features(idx, yy, xx, n, profile, cy, cx)
    values.update(_shape.profile_features(profile))
    bg = _stain.background_rgb(image, labels)
    od3 = _stain.optical_density(image, bg)
    od = od3.mean(axis=2)
    values.update(_stain.pallor_features(idx, od[fg], depth, yy, xx, cy, cx,
                                         np.maximum(profile.mean(axis=1), 1.0), n))
    values.update(_stain.color_features(idx, image[fg].astype(np.float64), od3[fg],
                                         values["area"], n, 1.0))
    gray = np.clip(255.0 - od * 255.0, 0, 255).astype(np.uint8)
    values.update(_stain.texture_features(lab, fg, idx, od, gray, n))
    values.update(_stain.inclusion_features(lab, fg, idx, od, depth, n))
    if pixel_size:
        for feature in FEATURES:
            if "px²" in feature.unit:
                values[feature.name] = values[feature.name] * pixel_size**2
            elif "px" in feature.unit:
                values[feature.name] = values[feature.name] * pixel_size
    return pd.DataFrame({"label": ids.astype(np.int64),
                         **{prefix + name: np.asarray(values[name], dtype=np.float64)
                            for name in FEATURE_NAMES}})


def describe_cell(row, *, pixel_size: float | None = None, names=None) -> str:
    """A few lines of a cell's morphology in words and numbers (hover text, cell detail)."""
    get = row.get if hasattr(row, "get") else (lambda key, default=None: default)
    lines = []
    for name in names or ("equivalent_diameter", "area", "elongation", "circularity",
                          "pallor_rim_ratio", "target_score", "spicule_count", "od_mean"):
        feature = BY_NAME[name]
        value = get(feature.column, get(name, None))
        if value is None or not np.isfinite(float(value)):
            continue
        unit = feature.unit_for(pixel_size)
        unit = "" if unit in ("", "count") else f" {unit}"
        text = f"{float(value):.0f}" if feature.unit == "count" else f"{float(value):.3g}"
        lines.append(f"{name.replace('_', ' ')}: {text}{unit}")
    return "\n".join(lines)


def markdown_table(pixel_size: float | None = 1.0) -> str:
    """The documentation table of every feature (name, family, unit, definition)."""
    rows = ["| feature | family | unit | definition |", "|---|---|---|---|"]
    for f in FEATURES:
        rows.append(f"| `{f.name}` | {f.family} | {f.unit_for(pixel_size) or '-'} | "
                    f"{f.definition} |")
    return "\n".join(rows)


def add_morphology(table: pd.DataFrame, labels, image, *,
                   pixel_size: float | None = None) -> pd.DataFrame:
    """The cell table with its ``morph_*`` columns (measured now; old ones replaced)."""
    measured = morphology_features(labels, image, pixel_size=pixel_size, prefix=COLUMN_PREFIX)
    return merge_morphology(table, measured)


def merge_morphology(table: pd.DataFrame, measured: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the ``morph_*`` columns of ``measured`` joined on ``label`` (old ones
    replaced; rows and their order kept)."""
    kept = table.drop(columns=feature_columns(table.columns))
    merged = kept.merge(measured, on="label", how="left")
    merged.index = table.index
    return merged
