"""Morphology features against shapes and stains whose true values are known."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.morphology.features import (
    BY_NAME,
    COLUMN_PREFIX,
    FAMILIES,
    FEATURE_NAMES,
    FEATURES,
    describe_cell,
    feature_columns,
    markdown_table,
    morphology_features,
)

GLASS = np.array([235, 225, 230], np.float64)


def _canvas(size=200):
    yy, xx = np.mgrid[:size, :size].astype(np.float64)
    return yy, xx


def _paint(masks_and_od, size=200):
    """Labels and an RGB image: each cell's pixels get the glass color dimmed by its OD map."""
    labels = np.zeros((size, size), np.int32)
    od = np.zeros((size, size))
    for i, (mask, cell_od) in enumerate(masks_and_od, start=1):
        labels[mask] = i
        od[mask] = cell_od[mask] if np.ndim(cell_od) else cell_od
    rgb = GLASS * 10.0 ** (-od[..., None] * np.array([0.6, 1.0, 0.8]))
    return labels, np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def _disc(cy, cx, r, size=200):
    yy, xx = _canvas(size)
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2


def test_registry_has_forty_named_features_in_every_family():
    assert len(FEATURES) >= 40
    assert len(set(FEATURE_NAMES)) == len(FEATURES)
    assert {f.family for f in FEATURES} == set(FAMILIES)
    assert all(f.definition and f.family in FAMILIES for f in FEATURES)
    assert BY_NAME["area"].unit_for(0.1) == "µm²" and BY_NAME["area"].unit_for(None) == "px²"
    assert BY_NAME["major_axis"].unit_for(0.1) == "µm"
    table = markdown_table()
    assert all(f"`{name}`" in table for name in FEATURE_NAMES)


def test_disc_of_known_radius():
    r = 20
    labels, image = _paint([(_disc(60, 60, r), 0.3), (_disc(140, 140, 10), 0.3)])
    table = morphology_features(labels, image)
    assert list(table.columns) == ["label", *FEATURE_NAMES]
    big = table.set_index("label").loc[1]
    assert big["area"] == pytest.approx(np.pi * r**2, rel=0.02)
    assert big["equivalent_diameter"] == pytest.approx(2 * r, rel=0.02)
    assert big["major_axis"] == pytest.approx(2 * r, rel=0.03)
    assert big["feret_diameter"] == pytest.approx(2 * r, rel=0.05)
    assert big["perimeter"] == pytest.approx(2 * np.pi * r, rel=0.05)
    assert big["elongation"] == pytest.approx(1.0, abs=0.02)
    assert big["circularity"] > 0.95 and big["solidity"] > 0.97 and big["convexity"] > 0.97
    assert big["spicule_count"] == 0 and big["fourier_2"] < 0.02
    small = table.set_index("label").loc[2]
    assert small["area"] == pytest.approx(np.pi * 100, rel=0.05)


def test_pixel_size_gives_micrometres():
    labels, image = _paint([(_disc(100, 100, 25), 0.3)])
    px = morphology_features(labels, image).iloc[0]
    um = morphology_features(labels, image, pixel_size=0.25).iloc[0]
    assert um["area"] == pytest.approx(px["area"] * 0.0625)
    assert um["equivalent_diameter"] == pytest.approx(px["equivalent_diameter"] * 0.25)
    assert um["od_integrated"] == pytest.approx(px["od_integrated"] * 0.0625)
    assert um["circularity"] == pytest.approx(px["circularity"])
    with pytest.raises(ValueError, match="pixel_size"):
        morphology_features(labels, image, pixel_size=-1)


def test_ellipse_elongation_and_axes():
    yy, xx = _canvas()
    ellipse = ((yy - 100) / 15) ** 2 + ((xx - 100) / 40) ** 2 <= 1
    labels, image = _paint([(ellipse, 0.3)])
    row = morphology_features(labels, image).iloc[0]
    assert row["elongation"] == pytest.approx(40 / 15, rel=0.05)
    assert row["major_axis"] == pytest.approx(80, rel=0.03)
    assert row["minor_axis"] == pytest.approx(30, rel=0.05)
    assert row["fourier_2"] > 0.15 and row["eccentricity"] > 0.9


def test_spicules_of_a_star_are_counted():
    yy, xx = _canvas()
    angle, radius = np.arctan2(yy - 100, xx - 100), np.hypot(yy - 100, xx - 100)
    star = radius <= 30 + 7 * np.cos(8 * angle)
    labels, image = _paint([(star, 0.3), (_disc(30, 30, 20), 0.3)])
    table = morphology_features(labels, image).set_index("label")
    assert table.loc[1, "spicule_count"] == 8
    assert table.loc[1, "convexity"] < table.loc[2, "convexity"]
    assert table.loc[1, "boundary_curvature"] > 3 * table.loc[2, "boundary_curvature"]


def test_central_pallor_target_and_spherocyte():
    yy, xx = _canvas()
    r1 = np.hypot(yy - 50, xx - 50)
    normal = np.where(r1 < 12, 0.05, 0.35)  # pale center, dark rim
    r2 = np.hypot(yy - 50, xx - 150)
    target = np.where(r2 < 7, 0.35, np.where(r2 < 15, 0.08, 0.35))  # dark center in pale ring
    labels, image = _paint([(r1 <= 25, normal), (r2 <= 25, target),
                            (_disc(150, 100, 25), 0.35)])  # uniform: spherocyte
    t = morphology_features(labels, image).set_index("label")
    assert t.loc[1, "pallor_rim_ratio"] < 0.4
    assert t.loc[1, "pallor_fraction"] == pytest.approx(np.pi * 12**2 / (np.pi * 25**2), abs=0.06)
    assert t.loc[1, "ring_5"] < t.loc[1, "ring_1"]
    assert t.loc[3, "pallor_rim_ratio"] == pytest.approx(1.0, abs=0.05)
    assert t.loc[3, "pallor_fraction"] < 0.02
    assert t.loc[2, "target_score"] > 0.4
    assert t.loc[1, "target_score"] < 0.05 and abs(t.loc[3, "target_score"]) < 0.05
    assert t.loc[3, "od_mean"] > t.loc[1, "od_mean"]


def test_dark_dots_are_counted_and_color_is_measured():
    cell = _disc(100, 100, 30)
    od = np.full(cell.shape, 0.2)
    for cy, cx in ((95, 92), (108, 104), (92, 110)):
        od[_disc(cy, cx, 1.5)] = 0.8
    labels, image = _paint([(cell, od), (_disc(30, 30, 20), 0.2)])
    t = morphology_features(labels, image).set_index("label")
    assert t.loc[1, "dark_dot_count"] == 3 and t.loc[2, "dark_dot_count"] == 0
    assert t.loc[1, "dark_dot_fraction"] > 0
    mean_rgb = image[labels == 2].mean(axis=0)
    assert t.loc[2, "mean_g"] == pytest.approx(mean_rgb[1])
    assert t.loc[2, "od_g"] == pytest.approx(0.2, abs=0.01)  # green carries the full OD
    assert t.loc[2, "glcm_contrast"] < t.loc[1, "glcm_contrast"]


def test_prefix_empty_and_bad_inputs_and_description():
    labels, image = _paint([(_disc(100, 100, 25), 0.3)])
    table = morphology_features(labels, image, prefix=COLUMN_PREFIX)
    assert feature_columns(table.columns) == [COLUMN_PREFIX + n for n in FEATURE_NAMES]
    text = describe_cell(table.iloc[0], pixel_size=0.1)
    assert "equivalent diameter" in text and "µm" in text
    empty = morphology_features(np.zeros((20, 20), np.int32), np.zeros((20, 20, 3), np.uint8))
    assert len(empty) == 0 and "area" in empty.columns
    with pytest.raises(ValueError, match="integer"):
        morphology_features(labels.astype(float), image)
    with pytest.raises(ValueError, match="matching"):
        morphology_features(labels, image[:10])
