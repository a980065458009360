"""Object kinds from color and size (issue 24): a pale lilac body is a platelet by its hue, a purple
clump smaller than any white cell is a platelet, free platelets are cut out however many lie on the
glass, and a platelet at a red cell's edge is told from an inclusion by what rings it."""

from __future__ import annotations

import numpy as np

from napari_reddino.segment.kind import nuclear_pixels, object_kinds, separate_white_cells

GLASS = (236, 232, 226)
PINK = (205, 150, 160)  # haemoglobin: dark in green and blue, light in red
LILAC = (185, 178, 214)  # a pale platelet: red and green absorbed, blue passed
FAINT = (200, 195, 218)  # paler still: too faint in red for the per-pixel nuclear rule
PURPLE = (120, 90, 170)  # chromatin or a platelet's granulomere
RADIUS = 20


def _disc(shape, center, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _smear(extra=()):
    """A 4 x 4 grid of pink red cells (labels 1..16) and ``extra`` (color, center, radius)
    bodies, each its own label after them. Returns (rgb, labels)."""
    shape = (400, 400)
    rgb = np.empty((*shape, 3), np.uint8)
    rgb[:] = GLASS
    labels = np.zeros(shape, np.int32)
    bodies = [(PINK, (50 + 90 * i, 50 + 90 * j), RADIUS) for i in range(4) for j in range(4)]
    for label, (color, center, radius) in enumerate([*bodies, *extra], start=1):
        disc = _disc(shape, center, radius)
        rgb[disc] = color
        labels[disc] = label
    noise = np.random.default_rng(0).normal(0, 1.5, rgb.shape)
    return np.clip(rgb + noise, 0, 255).astype(np.uint8), labels


def test_a_pale_lilac_body_is_a_platelet_by_its_hue_and_pink_cells_stay_red():
    rgb, labels = _smear([(FAINT, (95, 95), 6)])
    assert not nuclear_pixels(rgb, labels)[labels == 17].any()
    kinds = object_kinds(labels, rgb, RADIUS)
    assert kinds[17] == "platelet"
    assert (kinds[1:17] == "rbc").all()


def test_a_purple_clump_smaller_than_a_white_cell_is_a_platelet():
    small = RADIUS * 0.7  # half a red cell's area, all of it chromatin-purple
    large = RADIUS * 1.3  # a white cell is a red cell's size or more
    rgb, labels = _smear([(PURPLE, (95, 95), small), (PURPLE, (275, 275), large)])
    kinds = object_kinds(labels, rgb, RADIUS)
    assert kinds[17] == "platelet"
    assert kinds[18] == "wbc"


def test_free_platelets_are_cut_out_however_many_lie_on_the_glass():
    centers = [(95 + 90 * i, 95 + 90 * j) for i in range(3) for j in range(3)]
    rgb, labels = _smear([(PURPLE, c, 5) for c in centers])
    labels[labels > 16] = 0  # dropped by the threshold as specks: only the glass holds them
    out = separate_white_cells(labels, rgb, RADIUS)
    kinds = object_kinds(out, rgb, RADIUS)
    hit = out[tuple(np.transpose(centers))]
    assert (hit > 16).all()
    assert (kinds[hit] == "platelet").all()


def test_a_platelet_at_a_cells_edge_is_cut_out_and_an_inclusion_stays():
    rgb, labels = _smear()
    edge = (50, 50 + RADIUS)  # on the rim of cell 1, half of it over the glass
    halo = _disc(labels.shape, edge, 9)
    rgb[halo & (labels == 0)] = LILAC  # its pale hyalomere, joined to cell 1 by the threshold
    labels[halo] = 1
    rgb[_disc(labels.shape, edge, 5)] = PURPLE
    inclusion = (140, 140)  # the center of cell 6, ringed by haemoglobin
    rgb[_disc(labels.shape, inclusion, 5)] = PURPLE
    out = separate_white_cells(labels, rgb, RADIUS)
    kinds = object_kinds(out, rgb, RADIUS)
    assert out[edge] != 1 and kinds[out[edge]] == "platelet"
    assert out[inclusion] == labels[inclusion] and kinds[out[inclusion]] == "rbc"
