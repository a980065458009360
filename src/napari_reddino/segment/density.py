"""Optical density of a smear against its own empty glass (the stain model's first step).

The glass is estimated smoothly (a max filter at low resolution), so uneven illumination does not
move any threshold built on these densities.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_LOG_LUT = np.log(np.arange(256, dtype=np.float32) + 1.0)


def _log_background(log_rgb: np.ndarray) -> np.ndarray:
    """Smooth log-brightness of the empty glass: max filter at low resolution, upsampled."""
    height, width = log_rgb.shape
    factor = max(1, min(height, width) // 128)  # the glass varies slowly: a coarse grid will do
    h, w = height // factor, width // factor
    small = log_rgb[: h * factor, : w * factor].reshape(h, factor, w, factor).mean((1, 3))
    size = max(5, min(h, w) // 6)
    bright = ndimage.maximum_filter(small, size=size)
    bright = ndimage.gaussian_filter(bright, size / 2)
    zoomed = ndimage.zoom(bright, (height / h, width / w), order=1, grid_mode=True,
                          mode="nearest")
    return zoomed[:height, :width]


def channel_density(rgb: np.ndarray, channel: int) -> np.ndarray:
    """Optical density of one channel against its own background estimate (>= 0)."""
    log = _LOG_LUT[rgb[..., channel]]
    return np.maximum(_log_background(log) - log, 0)


def stain_density(rgb: np.ndarray) -> np.ndarray:
    """Mean optical density over the channels against the background: high where stained."""
    log_rgb = _LOG_LUT[rgb].mean(axis=2)  # mean of per-channel logs = log of geometric mean
    density = _log_background(log_rgb) - log_rgb
    np.maximum(density, 0, out=density)
    return ndimage.gaussian_filter(density, 1.0)
