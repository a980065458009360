"""Sprites of single blood cells for the synthetic smear: shape, stain thickness, antialiased edge.

Each renderer takes cell-frame coordinates ``(u, v)`` in pixels (already rotated) and the nominal
RBC radius, and returns a :class:`Sprite`: coverage ``alpha`` (the truth mask is ``alpha >= 0.5``)
and stain thickness maps that the smear composes by Beer-Lambert absorbance. Shapes are polar
radius functions over an ellipse, so every morphology is a few vectorized numpy lines.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

RBC_CLASSES = (
    "discocyte",
    "spherocyte",
    "elliptocyte",
    "echinocyte",
    "stomatocyte",
    "target",
    "dacrocyte",
    "sickle",
    "schistocyte",
)
DISTRACTOR_CLASSES = ("wbc", "platelet")


@dataclass
class Sprite:
    """One rendered object on its patch: coverage and stain thickness (None = no such stain)."""

    alpha: np.ndarray
    rbc: np.ndarray | None = None
    nucleus: np.ndarray | None = None
    cytoplasm: np.ndarray | None = None


def _polar(u, v, a, b, modulation=None):
    """Coverage and normalized radius of a (modulated) ellipse with semi-axes a (u) and b (v)."""
    theta = np.arctan2(v, u)
    radius = a * b / np.sqrt((b * np.cos(theta)) ** 2 + (a * np.sin(theta)) ** 2)
    if modulation is not None:
        radius = radius * modulation(theta)
    dist = np.hypot(u, v)
    alpha = np.clip(radius - dist + 0.5, 0.0, 1.0)
    return alpha, dist / np.maximum(radius, 1e-6)


def _biconcave(rho, pallor, width=0.45, rim=0.2):
    """Thickness of a biconcave disc: dense rim, pale flat-bottomed center (the central pallor)."""
    body = 1.0 - pallor * np.exp(-((rho / width) ** 4))
    membrane = rim * np.exp(-(((rho - 0.86) / 0.11) ** 2))
    return body + membrane


def _discocyte(u, v, r, rng):
    a = r * rng.uniform(0.95, 1.07)
    alpha, rho = _polar(u, v, a, a * rng.uniform(0.92, 1.0))
    return Sprite(alpha, rbc=alpha * _biconcave(rho, rng.uniform(0.5, 0.7)))


def _spherocyte(u, v, r, rng):
    a = r * rng.uniform(0.68, 0.78)
    alpha, rho = _polar(u, v, a, a * rng.uniform(0.95, 1.0))
    return Sprite(alpha, rbc=alpha * (1.35 - 0.15 * rho**2))


def _elliptocyte(u, v, r, rng):
    elongation = rng.uniform(1.3, 1.7)
    a, b = r * np.sqrt(elongation), r / np.sqrt(elongation)
    alpha, rho = _polar(u, v, a, b)
    return Sprite(alpha, rbc=alpha * _biconcave(rho, rng.uniform(0.2, 0.35), width=0.35))


def _echinocyte(u, v, r, rng):
    spikes, phase = int(rng.integers(10, 17)), rng.uniform(0, 2 * np.pi)
    depth = rng.uniform(0.07, 0.12)

    def crenation(theta):
        return 1.0 - depth + 2 * depth * np.maximum(np.cos(spikes * theta + phase), 0) ** 3

    alpha, rho = _polar(u, v, r * 0.95, r * 0.93, crenation)
    return Sprite(alpha, rbc=alpha * _biconcave(rho, 0.3, rim=0.25))


def _stomatocyte(u, v, r, rng):
    a = r * rng.uniform(0.95, 1.05)
    alpha, _rho = _polar(u, v, a, a * 0.97)
    slit = np.exp(-((u / (0.5 * a)) ** 2) - (v / (0.11 * a)) ** 2)
    return Sprite(alpha, rbc=alpha * (1.05 - 0.75 * slit))


def _target(u, v, r, rng):
    a = r * rng.uniform(0.98, 1.08)
    alpha, rho = _polar(u, v, a, a * 0.97)
    ring = np.exp(-(((rho - 0.5) / 0.13) ** 2))
    return Sprite(alpha, rbc=alpha * (1.05 - 0.7 * ring + 0.15 * np.exp(-((rho / 0.2) ** 2))))


def _dacrocyte(u, v, r, rng):
    tail = rng.uniform(0.55, 0.9)

    def teardrop(theta):
        return 1.0 + tail * np.maximum(np.cos(theta), 0) ** 10

    alpha, rho = _polar(u, v, r * 0.88, r * 0.85, teardrop)
    return Sprite(alpha, rbc=alpha * _biconcave(rho, 0.3, width=0.35))


def _sickle(u, v, r, rng):
    a, b = r * rng.uniform(1.5, 1.8), r * rng.uniform(0.32, 0.42)
    bend = rng.uniform(0.5, 0.9)
    alpha, rho = _polar(u, v - bend * u**2 / a, a, b)
    return Sprite(alpha, rbc=alpha * (1.2 - 0.2 * rho**2))


def _schistocyte(u, v, r, rng):
    a = r * rng.uniform(0.6, 0.75)
    alpha, rho = _polar(u, v, a, a * rng.uniform(0.8, 1.0))
    for _ in range(int(rng.integers(1, 3))):  # one or two straight cuts: helmet / triangle
        angle, offset = rng.uniform(0, 2 * np.pi), rng.uniform(-0.05, 0.35) * a
        along = u * np.cos(angle) + v * np.sin(angle)
        alpha = np.minimum(alpha, np.clip(offset - along + 0.5, 0.0, 1.0))
    return Sprite(alpha, rbc=alpha * (1.15 - 0.15 * rho**2))


def _wbc(u, v, r, rng):
    """Neutrophil-like: pale cytoplasm, 2-4 purple lobes with mottled chromatin."""
    a = r * rng.uniform(1.8, 2.1)
    alpha, _ = _polar(u, v, a, a * rng.uniform(0.92, 1.0))
    lobes = np.zeros_like(alpha)
    n_lobes = int(rng.integers(2, 5))
    start = rng.uniform(0, 2 * np.pi)
    for k in range(n_lobes):
        angle = start + k * 2 * np.pi / n_lobes + rng.uniform(-0.3, 0.3)
        cu, cv = 0.33 * a * np.cos(angle), 0.33 * a * np.sin(angle)
        lobe, _ = _polar(u - cu, v - cv, 0.3 * a, 0.22 * a)
        lobes = np.maximum(lobes, lobe)
    chromatin = 1.0 + 0.6 * ndimage.gaussian_filter(rng.normal(0, 1, u.shape), 1.2)
    return Sprite(alpha, nucleus=lobes * 1.3 * chromatin, cytoplasm=alpha * 1.0)


def _platelet(u, v, r, rng):
    """Small irregular purple granular fragment."""
    a = r * rng.uniform(0.16, 0.26)
    harmonics = rng.normal(0, 0.12, 3)
    phases = rng.uniform(0, 2 * np.pi, 3)

    def ragged(theta):
        return 1.0 + sum(h * np.cos((k + 2) * theta + p)
                         for k, (h, p) in enumerate(zip(harmonics, phases)))

    alpha, _ = _polar(u, v, a, a * rng.uniform(0.7, 1.0), ragged)
    grains = 0.8 + 0.4 * (rng.random(alpha.shape) > 0.5)
    return Sprite(alpha, nucleus=alpha * 1.1 * grains)


RENDERERS: dict[str, Callable] = {
    "discocyte": _discocyte,
    "spherocyte": _spherocyte,
    "elliptocyte": _elliptocyte,
    "echinocyte": _echinocyte,
    "stomatocyte": _stomatocyte,
    "target": _target,
    "dacrocyte": _dacrocyte,
    "sickle": _sickle,
    "schistocyte": _schistocyte,
    "wbc": _wbc,
    "platelet": _platelet,
}

#: Half-size of each sprite's patch in units of the RBC radius (covers its largest extent).
EXTENT = {name: 1.25 for name in RENDERERS} | {
    "elliptocyte": 1.5, "dacrocyte": 1.8, "sickle": 1.95, "wbc": 2.15, "platelet": 0.4,
}


def ring_parasite(u, v, r, rng) -> np.ndarray:
    """Ring-stage parasite inside an RBC: thin purple ring with a chromatin dot, off center."""
    offset = rng.uniform(0.1, 0.4) * r
    angle = rng.uniform(0, 2 * np.pi)
    pu, pv = u - offset * np.cos(angle), v - offset * np.sin(angle)
    ring_radius = r * rng.uniform(0.17, 0.24)
    dist = np.hypot(pu, pv)
    ring = np.exp(-(((dist - ring_radius) / max(0.9, 0.045 * r)) ** 2))
    dot_angle = rng.uniform(0, 2 * np.pi)
    du = pu - ring_radius * np.cos(dot_angle)
    dv = pv - ring_radius * np.sin(dot_angle)
    dot = np.exp(-((du**2 + dv**2) / (max(1.2, 0.08 * r) ** 2)))
    return 0.9 * ring + 1.6 * dot


def render(kind: str, cy: float, cx: float, r: float, angle: float, rng, parasite=False):
    """Render one object centered at (cy, cx); returns (top, left, Sprite) for its patch."""
    half = int(np.ceil(EXTENT[kind] * r + 2))
    iy, ix = round(cy), round(cx)
    offsets = np.arange(-half, half + 1, dtype=np.float32)
    dy = offsets[:, None] - np.float32(cy - iy)
    dx = offsets[None, :] - np.float32(cx - ix)
    cos, sin = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = dx * cos + dy * sin
    v = -dx * sin + dy * cos
    sprite = RENDERERS[kind](u, v, r, rng)
    if parasite and sprite.rbc is not None:
        sprite.nucleus = sprite.alpha * ring_parasite(u, v, r, rng)
    return iy - half, ix - half, sprite


def hypochromic(sprite: Sprite, kind: str, strength: float, rng) -> Sprite:
    """The same cell with little haemoglobin: the rim stays, the inside fades by ``strength``.

    Thalassemic and iron-deficient cells look like this: a thin ring, darker on one side (so a
    threshold keeps one or two crescents), around a center barely darker than the glass; a
    target cell keeps a faint ring and its central dot.
    """
    if strength <= 0 or sprite.rbc is None:
        return sprite
    inside = ndimage.distance_transform_edt(sprite.alpha >= 0.5)
    depth = inside / max(float(inside.max()), 1.0)  # 0 at the edge, 1 at the center
    fade = np.clip((depth - 0.18) / 0.2, 0.0, 1.0)
    if kind == "target":  # the central dot survives, a faint ring between
        fade = fade * (1.0 - 0.8 * np.exp(-((depth - 1.0) / 0.25) ** 2))
    height, width = sprite.alpha.shape
    v, u = np.mgrid[:height, :width]
    side = np.cos(np.arctan2(v - height / 2, u - width / 2) - rng.uniform(0, 2 * np.pi))
    uneven = 1.0 - 0.7 * strength * (0.5 + 0.5 * side) * (1.0 - fade)  # one side of the rim fades
    return Sprite(sprite.alpha, rbc=sprite.rbc * (1.0 - strength * fade) * uneven,
                  nucleus=sprite.nucleus, cytoplasm=sprite.cytoplasm)
