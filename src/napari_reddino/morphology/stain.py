"""Stain inside every cell: central pallor, color, texture and dark inclusions.

Everything works on the flat list of cell pixels (``idx`` = the cell's row) with ``np.bincount``,
so one pass covers all cells of a smear. Stain is optical density (OD = log10 background /
pixel, per channel), which does not depend on the lamp's brightness. ``depth`` is each pixel's
relative position between its cell's outline (0) and centroid (1) along its ray (see
``shape.polar_profile``); the five rings split it in equal steps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.color import rgb2hsv

N_RINGS = 5
GLCM_LEVELS = 8
PALLOR_FRACTION_OF_RIM = 0.6  # a pallor pixel holds less than this share of the rim's stain
DOT_CONTRAST = 0.12  # OD above the local (sigma 2 px) surround that makes a dark dot


def _mean(idx, values, n):
    counts = np.maximum(np.bincount(idx, minlength=n), 1)
    return np.bincount(idx, values, minlength=n) / counts


def background_rgb(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-channel brightness of the empty glass (median outside cells, else 99th pct)."""
    outside = image[::3, ::3][labels[::3, ::3] == 0]  # every 9th pixel is plenty
    if len(outside) >= max(100, labels.size // 100):
        return np.maximum(np.median(outside, axis=0), 1.0)
    return np.maximum(np.percentile(image.reshape(-1, 3), 99, axis=0), 1.0)


def optical_density(image: np.ndarray, background: np.ndarray) -> np.ndarray:
    """(H, W, 3) float32 OD per channel, >= 0."""
    lut = np.log10(np.arange(256, dtype=np.float32) + 1.0)
    od = np.log10(background.astype(np.float32) + 1.0) - lut[image]
    return np.maximum(od, 0.0)


def pallor_features(idx, od_px, depth, yy, xx, cy, cx, mean_radius, n):
    """Central pallor: ring profile, pallor-to-rim ratio, pallor share and shape, target score."""
    ring = np.minimum((depth * N_RINGS).astype(np.int64), N_RINGS - 1)
    rings = _mean(idx * N_RINGS + ring, od_px, n * N_RINGS).reshape(n, N_RINGS)
    cell_od = np.maximum(_mean(idx, od_px, n), 1e-6)
    rim = np.maximum(rings[:, :2].mean(axis=1), 1e-6)
    center = _mean(idx, od_px * (depth >= 0.6), n) / np.maximum(_mean(idx, depth >= 0.6, n), 1e-6)
    pale = (od_px < PALLOR_FRACTION_OF_RIM * rim[idx]) & (depth >= 0.25)
    out = {f"ring_{i + 1}": rings[:, i] / cell_od for i in range(N_RINGS)}
    out["pallor_rim_ratio"] = center / rim
    out["pallor_fraction"] = _mean(idx, pale, n)
    out["target_score"] = (rings[:, -1] - rings[:, 2:4].min(axis=1)) / rim
    # the pale area's own shape: a slit (stomatocyte) or a disc, centered or not
    w = pale.astype(np.float64)
    mass = np.maximum(np.bincount(idx, w, minlength=n), 1e-6)
    py = np.bincount(idx, w * yy, minlength=n) / mass
    px = np.bincount(idx, w * xx, minlength=n) / mass
    dy, dx = yy - py[idx], xx - px[idx]
    syy, sxx, sxy = (np.bincount(idx, w * v, minlength=n) / mass
                     for v in (dy * dy, dx * dx, dy * dx))
    spread = np.sqrt(((syy - sxx) / 2) ** 2 + sxy**2)
    lam1, lam2 = (syy + sxx) / 2 + spread, np.maximum((syy + sxx) / 2 - spread, 0.0)
    has = mass >= 3
    out["pallor_elongation"] = np.where(has, np.sqrt(lam1 / np.maximum(lam2, 0.25)), 1.0)
    out["pallor_offset"] = np.where(has, np.hypot(py - cy, px - cx) / mean_radius, 0.0)
    return out


def color_features(idx, rgb_px, od3_px, area, n, pixel_area):
    """Per-channel means / spreads, OD per channel, total stain, hue and saturation."""
    out = {}
    for c, name in enumerate("rgb"):
        mean = _mean(idx, rgb_px[:, c], n)
        out[f"mean_{name}"] = mean
        out[f"std_{name}"] = np.sqrt(np.maximum(_mean(idx, rgb_px[:, c] ** 2, n) - mean**2, 0))
        out[f"od_{name}"] = _mean(idx, od3_px[:, c], n)
    od = od3_px.mean(axis=1)
    mean_od = _mean(idx, od, n)
    out["od_mean"] = mean_od
    out["od_std"] = np.sqrt(np.maximum(_mean(idx, od**2, n) - mean_od**2, 0))
    out["od_integrated"] = mean_od * area * pixel_area
    mean_rgb = np.stack([out["mean_r"], out["mean_g"], out["mean_b"]], axis=1) / 255.0
    hsv = rgb2hsv(np.clip(mean_rgb, 0, 1)[:, None, :])[:, 0]
    out["hue"] = hsv[:, 0] * 360.0
    out["saturation"] = hsv[:, 1]
    return out


def _neighbors(shape, fg):
    """Flat positions of the cell pixels in the image padded by one pixel, and its row stride."""
    yy, xx = np.nonzero(fg)
    stride = shape[1] + 2
    return (yy + 1) * stride + (xx + 1), stride


def lbp_codes(gray, fg):
    """Rotation-invariant uniform LBP (8 neighbors, radius 1; skimage's ``"uniform"``) codes
    of the cell pixels: 0-8 = number of neighbors at least as bright, 9 = non-uniform."""
    pos, stride = _neighbors(gray.shape, fg)
    flat = np.pad(gray, 1, mode="edge").ravel()
    center = flat[pos]
    ring = (-stride - 1, -stride, -stride + 1, 1, stride + 1, stride, stride - 1, -1)
    bits = np.stack([flat[pos + o] >= center for o in ring]).astype(np.int8)
    transitions = (bits != np.roll(bits, 1, axis=0)).sum(axis=0)
    return np.where(transitions <= 2, bits.sum(axis=0), 9).astype(np.int64)


def texture_features(lab, fg, idx, od, gray, n):
    """GLCM statistics (8 OD levels, right + down neighbors, symmetric) and LBP histogram."""
    cell_od = np.maximum(_mean(idx, od[fg], n), 1e-6)
    L = GLCM_LEVELS
    level = np.clip((od[fg] / (2.0 * cell_od[idx]) * L).astype(np.int64), 0, L - 1)
    pos, stride = _neighbors(lab.shape, fg)
    flat_lab = np.pad(lab, 1).ravel()
    flat_level = np.zeros(flat_lab.shape, np.int64)
    flat_level[pos] = level
    hist = np.zeros(n * L * L)
    for offset in (1, stride):  # right and down neighbors inside the same cell
        same = flat_lab[pos + offset] == flat_lab[pos]
        cell, la, lb = idx[same], level[same], flat_level[pos[same] + offset]
        hist += np.bincount(cell * L * L + la * L + lb, minlength=n * L * L)
        hist += np.bincount(cell * L * L + lb * L + la, minlength=n * L * L)
    p = hist.reshape(n, L, L)
    p = p / np.maximum(p.sum(axis=(1, 2), keepdims=True), 1e-12)
    i, j = np.meshgrid(np.arange(L), np.arange(L), indexing="ij")
    mu = (p * i).sum(axis=(1, 2))
    var = (p * (i - mu[:, None, None]) ** 2).sum(axis=(1, 2))
    cov = (p * (i - mu[:, None, None]) * (j - mu[:, None, None])).sum(axis=(1, 2))
    logp = np.log(np.where(p > 0, p, 1.0))
    codes = lbp_codes(gray, fg)
    lbp = np.bincount(idx * 10 + codes, minlength=n * 10).reshape(n, 10).astype(np.float64)
    lbp /= np.maximum(lbp.sum(axis=1, keepdims=True), 1)
    return {
        "glcm_contrast": (p * (i - j) ** 2).sum(axis=(1, 2)),
        "glcm_homogeneity": (p / (1.0 + (i - j) ** 2)).sum(axis=(1, 2)),
        "glcm_energy": np.sqrt((p**2).sum(axis=(1, 2))),
        "glcm_correlation": np.where(var > 1e-9, cov / np.maximum(var, 1e-9), 1.0),
        "glcm_entropy": -(p * logp).sum(axis=(1, 2)),
        "lbp_entropy": -(lbp * np.log(np.where(lbp > 0, lbp, 1.0))).sum(axis=1),
        "lbp_spots": lbp[:, 0] + lbp[:, 8],
        "lbp_irregular": lbp[:, 9],
    }


def inclusion_features(lab, fg, idx, od, depth, n):
    """Dark dots: small spots darker than their surround, away from the rim."""
    residual = od - ndimage.gaussian_filter(od, 2.0)
    dot_px = np.zeros(lab.shape, bool)
    dot_px[fg] = (residual[fg] > DOT_CONTRAST) & (depth >= 0.35)
    dots, n_dots = ndimage.label(dot_px)
    out = {"dark_dot_fraction": _mean(idx, dot_px[fg], n)}
    if n_dots:
        owner = np.zeros(n_dots + 1, np.int64)
        owner[dots[dot_px]] = lab[dot_px]  # every dot lies inside one cell
        out["dark_dot_count"] = np.bincount(owner[1:] - 1, minlength=n)[:n].astype(np.float64)
    else:
        out["dark_dot_count"] = np.zeros(n)
    return out
