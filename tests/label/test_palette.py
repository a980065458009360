"""The class colors stay apart for colour-blind users (simulated with Machado et al. 2009)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from skimage.color import deltaE_ciede2000, rgb2lab

from napari_reddino.label.classes import (
    CHULA_CLASS_SET,
    CVD_SAFE_COLORS,
    DEFAULT_CLASS_SET,
    default_colors,
)

# Machado, Oliveira & Fernandes (2009), "A Physiologically-based Model for Simulation of Color
# Vision Deficiency", IEEE TVCG 15(6); their published severity-1.0 matrices, on linear RGB
# (the same table colorspacious ships; colorspacious is not a dependency here).
MACHADO = {
    "deuteranopia": np.array([[0.367322, 0.860646, -0.227968],
                              [0.280085, 0.672501, 0.047413],
                              [-0.011820, 0.042940, 0.968881]]),
    "protanopia": np.array([[0.152286, 1.052583, -0.204868],
                            [0.114503, 0.786281, 0.099216],
                            [-0.003882, -0.048116, 1.051998]]),
}
MIN_DELTA_E = 7.0  # CIEDE2000; ~1-2 is barely visible side by side, 7 is plainly another color


def _linear(srgb: np.ndarray) -> np.ndarray:
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


def _srgb(linear: np.ndarray) -> np.ndarray:
    linear = np.clip(linear, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def seen_as(colors, vision: str) -> np.ndarray:
    rgb = np.array([to_rgb(c) for c in colors])
    if vision != "normal":
        rgb = _srgb(_linear(rgb) @ MACHADO[vision].T)
    return rgb2lab(rgb[None])[0]


def closest_pair(colors, vision: str) -> tuple[float, tuple[str, str]]:
    lab = seen_as(colors, vision)
    pairs = list(itertools.combinations(range(len(colors)), 2))
    deltas = [float(deltaE_ciede2000(lab[i], lab[j])) for i, j in pairs]
    i, j = pairs[int(np.argmin(deltas))]
    return min(deltas), (colors[i], colors[j])


def test_simulation_matches_known_dichromat_confusions():
    """Sanity of the simulation: red and green merge for a deuteranope (a protanope still sees
    red darker), blue and yellow stay far apart for both, and the old palette's brown and red
    (tab10's "target" and "echinocyte") come close for a protanope."""
    assert closest_pair(["#d62728", "#2ca02c"], "normal")[0] > 50
    assert closest_pair(["#d62728", "#2ca02c"], "deuteranopia")[0] < 6
    for vision in MACHADO:
        assert closest_pair(["#0000ff", "#ffff00"], vision)[0] > 50
    assert closest_pair(["#8c564b", "#d62728"], "protanopia")[0] < 10


@pytest.mark.parametrize("vision", ["normal", "deuteranopia", "protanopia"])
def test_thirteen_default_colors_stay_apart(vision):
    colors = default_colors(13)
    assert tuple(colors) == CVD_SAFE_COLORS
    delta, pair = closest_pair(colors, vision)
    assert delta >= MIN_DELTA_E, (vision, pair, delta)


@pytest.mark.parametrize("class_set", [DEFAULT_CLASS_SET, CHULA_CLASS_SET])
@pytest.mark.parametrize("vision", ["normal", "deuteranopia", "protanopia"])
def test_the_shipped_class_sets_are_safe(class_set, vision):
    delta, pair = closest_pair(list(class_set.colors), vision)
    assert delta >= MIN_DELTA_E, (class_set.title, vision, pair, delta)
    target = next(n for n in class_set.names if n.startswith("target"))
    crenated = next(n for n in class_set.names if n in ("echinocyte", "burr cell"))
    apart = closest_pair([class_set.color_of(target), class_set.color_of(crenated)], vision)[0]
    assert apart >= 2 * MIN_DELTA_E  # the pair of the issue: brown and red on pink cells


def test_a_fourteenth_class_still_gets_a_new_color():
    colors = default_colors(20)
    assert len(set(colors)) == 20 and colors[:13] == list(CVD_SAFE_COLORS)
    grown = DEFAULT_CLASS_SET.add("new", None).add("newer", None).add("newest", None)
    assert len(set(grown.colors)) == len(grown)
