"""PCA-3 RGB view of a patch-token grid, and where napari must draw it over the smear."""

from __future__ import annotations

import math

import numpy as np

_BAND_ROWS = 64  # grid rows read at once (zarr / dask grids stream band by band)


def grid_mask(mask: np.ndarray, patch_size: int, min_fraction: float = 0.5) -> np.ndarray:
    """Image-resolution (H, W) mask -> grid-resolution mask (cells at least half foreground)."""
    mask = np.asarray(mask, bool)
    h, w = math.ceil(mask.shape[0] / patch_size), math.ceil(mask.shape[1] / patch_size)
    padded = np.zeros((h * patch_size, w * patch_size), np.float32)
    padded[:mask.shape[0], :mask.shape[1]] = mask
    fraction = padded.reshape(h, patch_size, w, patch_size).mean(axis=(1, 3))
    return fraction >= min_fraction


def _bands(grid):
    for start in range(0, grid.shape[0], _BAND_ROWS):
        stop = min(start + _BAND_ROWS, grid.shape[0])
        yield start, stop, np.asarray(grid[start:stop], dtype=np.float32)


def _fit_tokens(grid, mask, max_tokens: int, rng: np.random.Generator) -> np.ndarray:
    """Foreground tokens (all, or a uniform random subsample of ``max_tokens``)."""
    total = int(mask.sum()) if mask is not None else grid.shape[0] * grid.shape[1]
    rate = min(1.0, max_tokens / max(total, 1))
    chosen = []
    for start, stop, band in _bands(grid):
        tokens = band.reshape(-1, band.shape[-1])
        keep = mask[start:stop].ravel() if mask is not None else np.ones(len(tokens), bool)
        if rate < 1.0:
            keep = keep & (rng.random(len(tokens)) < rate)
        chosen.append(tokens[keep])
    return np.concatenate(chosen)


def pca_rgb(grid, mask=None, *, max_fit_tokens: int = 100_000, seed: int = 0) -> np.ndarray:
    """(h, w, D) grid -> (h, w, 3) float32 in [0, 1]: the first 3 principal components.

    PCA is fitted on foreground tokens (``mask`` (h, w) bool, see :func:`grid_mask`) and applied
    to all; each component is stretched between its 1st and 99th foreground percentile.
    """
    if len(grid.shape) != 3:
        raise ValueError(f"grid must be (h, w, D), got shape {grid.shape}")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != tuple(grid.shape[:2]):
            raise ValueError(f"mask must have the grid's shape {tuple(grid.shape[:2])}, got "
                             f"{mask.shape}; downsample an image mask with grid_mask()")
        if mask.sum() < 3:
            raise ValueError("mask selects fewer than 3 grid cells: nothing to fit a PCA on")
    from sklearn.decomposition import PCA  # 1-5 s to import: not when a dock opens

    rng = np.random.default_rng(seed)
    fit = _fit_tokens(grid, mask, max_fit_tokens, rng)
    if len(fit) < 3:
        raise ValueError(f"grid {tuple(grid.shape)} has fewer than 3 tokens: nothing to fit")
    pca = PCA(n_components=3, random_state=seed).fit(fit)
    rgb = np.empty((*grid.shape[:2], 3), np.float32)
    for start, stop, band in _bands(grid):
        flat = pca.transform(band.reshape(-1, band.shape[-1]))
        rgb[start:stop] = flat.reshape(stop - start, band.shape[1], 3)
    reference = rgb[mask] if mask is not None else rgb.reshape(-1, 3)
    low, high = np.percentile(reference, [1, 99], axis=0)
    span = np.where(high > low, high - low, 1.0)
    return np.clip((rgb - low) / span, 0.0, 1.0).astype(np.float32)


def overlay_transform(backbone) -> tuple[tuple[float, float], tuple[float, float]]:
    """napari ``(scale, translate)`` placing grid cell (i, j) over its p x p image pixels.

    napari puts pixel centers at integer world coordinates, so image pixel k spans
    [k - 0.5, k + 0.5); grid cell i spans image pixels [i*p, (i+1)*p), whose center is
    i*p + (p-1)/2: hence scale p and translate (p-1)/2. Accepts a Backbone or a patch size.
    """
    p = int(getattr(backbone, "patch_size", backbone))
    if p < 1:
        raise ValueError(f"patch size must be >= 1, got {p}")
    offset = (p - 1) / 2
    return (float(p), float(p)), (offset, offset)
