"""Faster drop-in versions of Albumentations transforms whose library code is needlessly slow.

Each class keeps the library's parameters and random draws (``get_params*`` are inherited) and
returns the same pixels; only ``apply`` does less work. ``tests/training/data/test_augment.py``
checks the outputs are identical to the library's for many seeds.
"""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.augmentations.pixel import functional as fpixel


def _disc(radius: int) -> np.ndarray:
    """The pixels ``cv2.circle(..., thickness=-1)`` fills around a center, as a 0/1 mask."""
    size = 2 * radius + 3
    mask = np.zeros((size, size), np.uint8)
    cv2.circle(mask, center=(radius + 1, radius + 1), radius=radius, color=1, thickness=-1)
    return mask


def add_fog_local(img: np.ndarray, intensity: float, alpha_coef: float,
                  positions, radiuses) -> np.ndarray:  # fmt: skip
    """Albumentations' ``add_fog`` computed from how many particles cover each pixel.

    The library blends a full copy of the image per particle (hundreds per call). Each blend maps
    a covered pixel ``v`` to ``addWeighted(255, a, v, 1 - a)`` and leaves the others unchanged,
    so the result depends only on the pixel and its cover count: one lookup table, built with
    the same ``cv2.addWeighted``, applied once.
    """
    height, width = img.shape[:2]
    alpha = alpha_coef * intensity
    count = np.zeros((height, width), np.int32)
    discs: dict[int, np.ndarray] = {}
    for (x, y), radius in zip(positions, radiuses):
        radius = int(radius)
        disc = discs.get(radius)
        if disc is None:
            disc = discs[radius] = _disc(radius)
        top, left = y - radius - 1, x - radius - 1
        y0, x0 = max(top, 0), max(left, 0)
        y1, x1 = min(top + disc.shape[0], height), min(left + disc.shape[1], width)
        if y0 < y1 and x0 < x1:
            count[y0:y1, x0:x1] += disc[y0 - top : y1 - top, x0 - left : x1 - left]
    values = np.arange(256, dtype=np.uint8).reshape(1, 256)
    step = cv2.addWeighted(np.full_like(values, 255), alpha, values, 1 - alpha, 0).ravel()
    table = [np.arange(256, dtype=np.uint8)]
    for _ in range(int(count.max())):
        table.append(step[table[-1]])
    result = np.stack(table)[count[..., None], img]
    blur = max(3, int(min(height, width) // 30))
    blur += blur % 2 == 0
    return np.clip(cv2.GaussianBlur(result, (blur, blur), 0), 0, 255).astype(np.uint8)


def fog_particles(rng, width: int, height: int, intensity: float) -> list[tuple[int, int]]:
    """The library's particle positions, drawing ``randint(a, b)`` as ``a + _randbelow(b-a+1)``.

    That is exactly what ``random.randint`` returns (CPython: randrange -> _randbelow), without
    two Python calls per number: several hundred particles per image made this the hot spot.
    """
    region = max(1, int(width // 3 * intensity))
    center_x, center_y = (int(v) for v in fgeometric.center((height, width)))
    below = rng._randbelow
    positions = []
    current_w, current_h = width, height
    for _ in range(10):
        if current_w <= region or current_h <= region:
            break
        count = int(current_w * current_h / (region * region) * intensity * 10)
        x0, y0 = center_x - current_w // 2, center_y - current_h // 2
        span_x = center_x + current_w // 2 - x0 + 1
        span_y = center_y + current_h // 2 - y0 + 1
        for _ in range(count):
            x = x0 + below(span_x)
            positions.append((x, y0 + below(span_y)))
        current_w, current_h = int(current_w * 0.9), int(current_h * 0.9)
    return positions


class FastRandomFog(A.RandomFog):
    """``A.RandomFog`` with :func:`fog_particles` and :func:`add_fog_local` (same draws, pixels)."""

    def get_params_dependent_on_data(self, params, data):
        intensity = self.py_random.uniform(*self.fog_coef_range)
        height, width = params["shape"][:2]
        positions = fog_particles(self.py_random, width, height, intensity)
        radiuses = fpixel.get_fog_particle_radiuses((height, width), len(positions), intensity,
                                                    self.random_generator)  # fmt: skip
        return {"particle_positions": positions, "intensity": intensity, "radiuses": radiuses}

    def apply(self, img, particle_positions, radiuses, intensity, **params):
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            return super().apply(img, particle_positions, radiuses, intensity, **params)
        return add_fog_local(img, intensity, self.alpha_coef, particle_positions, radiuses)


def glass_blur_flat(img: np.ndarray, sigma: float, max_delta: int, iterations: int,
                    dxy: np.ndarray) -> np.ndarray:  # fmt: skip
    """Albumentations' ``glass_blur`` (mode "fast") with flat row indices.

    The library swaps pixels with 2-D fancy indexing; one flat index per pixel gathers and
    scatters the same rows in the same order (so repeated targets resolve identically).
    """
    x = cv2.GaussianBlur(np.array(img), sigmaX=sigma, ksize=(0, 0))
    height, width, channels = x.shape
    hs = np.arange(height - max_delta, max_delta, -1)
    ws = np.arange(width - max_delta, max_delta, -1)
    h, w = np.tile(hs, ws.shape[0]), np.repeat(ws, hs.shape[0])
    # one uint32 per RGB pixel: fancy indexing moves whole pixels at scalar speed
    packed = np.zeros((height * width, 4), np.uint8)
    packed[:, :channels] = x.reshape(-1, channels)
    flat = packed.view(np.uint32).ravel()
    here = h * width + w
    for i in range(iterations):
        there = here + dxy[:, i, 0] * width + dxy[:, i, 1]
        moved_in, moved_out = flat[there], flat[here]
        flat[here] = moved_in
        flat[there] = moved_out
    x = np.ascontiguousarray(packed[:, :channels]).reshape(height, width, channels)
    return cv2.GaussianBlur(x, sigmaX=sigma, ksize=(0, 0))


class FastGlassBlur(A.GlassBlur):
    """``A.GlassBlur`` with :func:`glass_blur_flat` for 3-channel uint8 images in "fast" mode."""

    def apply(self, img, *args, dxy, **params):
        if self.mode != "fast" or img.ndim != 3 or img.shape[2] > 4 or img.dtype != np.uint8:
            return super().apply(img, *args, dxy=dxy, **params)
        return glass_blur_flat(img, self.sigma, self.max_delta, self.iterations, dxy)
