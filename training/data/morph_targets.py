"""Interpretable morphology of one segmented cell: the label-free targets of the auxiliary head.

A haematologist names red-cell morphology from size (macro/microcyte), shape (elliptocyte,
teardrop, schistocyte, burr cell), central pallor (hypochromia, target cell, spherocyte,
stomatocyte) and stain. These numbers are computed from the cell's mask and pixels alone (no
labels), so regressing them from the CLS token is a prior any smear provides for free.
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv
from skimage.measure import regionprops

N_RADIAL = 6  # bins of the radial optical-density profile, centre to rim
FEATURE_NAMES = (
    "area", "equivalent_diameter", "major_axis", "minor_axis", "elongation", "eccentricity",
    "circularity", "solidity", "extent", "perimeter_ratio",
    "od_mean", "od_std", "od_red", "od_green", "od_blue",
    "pallor_fraction", "pallor_rim_ratio", "centre_od", "rim_od",
    "hue_cos", "hue_sin", "saturation",
    *(f"radial_od_{i}" for i in range(N_RADIAL)),
)


def optical_density(rgb: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per-channel OD = -log10(I / I_background): stain amount, independent of illumination."""
    ratio = (rgb.astype(np.float32) + 1.0) / (background.astype(np.float32) + 1.0)
    return -np.log10(np.clip(ratio, 1e-3, 1.0))


def smear_background(rgb: np.ndarray) -> np.ndarray:
    """The glass colour: per-channel 95th percentile of a smear (bright, cell-free pixels)."""
    return np.percentile(rgb.reshape(-1, 3), 95, axis=0)


def cell_features(rgb: np.ndarray, mask: np.ndarray, background: np.ndarray) -> np.ndarray:
    """:data:`FEATURE_NAMES` of the single cell ``mask`` in crop ``rgb`` (float32 vector)."""
    mask = np.asarray(mask, bool)
    props = regionprops(mask.astype(np.uint8))[0]
    area = float(props.area)
    perimeter = max(float(props.perimeter), 1.0)
    major, minor = float(props.axis_major_length), max(float(props.axis_minor_length), 1.0)
    hull_perimeter = perimeter
    if props.image_convex.any():
        hull_perimeter = max(float(regionprops(props.image_convex.astype(np.uint8))[0].perimeter),
                             1.0)
    od = optical_density(rgb, background)
    od_gray = od.mean(axis=-1)
    inside = od_gray[mask]
    # normalised depth: 0 at the rim, 1 at the deepest point of the cell
    depth = ndimage.distance_transform_edt(mask)
    depth = depth / max(depth.max(), 1.0)
    radial = []
    edges = np.linspace(0.0, 1.0 + 1e-6, N_RADIAL + 1)
    for lo, hi in itertools.pairwise(edges):
        ring = mask & (depth >= lo) & (depth < hi)
        radial.append(float(od_gray[ring].mean()) if ring.any() else float(inside.mean()))
    radial = radial[::-1]  # centre first
    centre = mask & (depth >= 0.6)
    rim = mask & (depth < 0.35)
    centre_od = float(od_gray[centre].mean()) if centre.any() else float(inside.mean())
    rim_od = float(od_gray[rim].mean()) if rim.any() else float(inside.mean())
    pallor_fraction = float((inside < 0.5 * np.percentile(inside, 90)).mean())
    hsv = rgb2hsv(rgb)
    hue = 2 * np.pi * hsv[..., 0][mask]
    return np.asarray([
        area, float(props.equivalent_diameter_area), major, minor, major / minor,
        float(props.eccentricity), 4 * np.pi * area / perimeter**2, float(props.solidity),
        float(props.extent), perimeter / hull_perimeter,
        float(inside.mean()), float(inside.std()),
        *(float(od[..., c][mask].mean()) for c in range(3)),
        pallor_fraction, centre_od / max(rim_od, 1e-3), centre_od, rim_od,
        float(np.cos(hue).mean()), float(np.sin(hue).mean()), float(hsv[..., 1][mask].mean()),
        *radial,
    ], dtype=np.float32)


def standardise(features: np.ndarray, clip: float = 5.0) -> tuple[np.ndarray, dict]:
    """Robust z-scores (median / 1.4826 MAD, clipped): outlier cells cannot dominate the MSE."""
    median = np.median(features, axis=0)
    scale = 1.4826 * np.median(np.abs(features - median), axis=0)
    scale = np.where(scale > 1e-8, scale, features.std(axis=0) + 1e-8)
    z = np.clip((features - median) / scale, -clip, clip).astype(np.float32)
    return z, {"median": median.tolist(), "scale": scale.tolist()}
