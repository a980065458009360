"""The scatter's dots visual draws each point where the camera puts it, in its own color, and
the selection on top (white rim, colored center)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.widgets._scatter import ScatterCanvas


@pytest.fixture
def scatter(qtbot):
    canvas = ScatterCanvas()
    qtbot.addWidget(canvas.native)
    canvas.native.show()
    yield canvas
    canvas.canvas.close()


def _pixel(scatter, image: np.ndarray, xy) -> np.ndarray:
    """RGB of the rendered pixel under data point ``xy`` (render() may be HiDPI-scaled)."""
    to_canvas = scatter.canvas.scene.node_transform(scatter.view.scene).imap
    x, y = to_canvas(np.array([*xy, 0.0, 1.0]))[:2]
    scale = image.shape[1] / scatter.canvas.size[0]
    return image[round(y * scale), round(x * scale), :3].astype(int)


def test_dots_are_drawn_in_their_colors_and_the_selection_on_top(scatter):
    points = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]], np.float32)
    colors = np.array([[1, 0, 0, 1], [0, 1, 0, 1], [0, 0, 1, 1], [1, 1, 0, 1]], np.float32)
    scatter.set_points(points, colors)
    scatter.markers.set_data(size=12.0)
    image = scatter.canvas.render()
    for xy, rgba in zip(points, colors):
        np.testing.assert_allclose(_pixel(scatter, image, xy), rgba[:3] * 255, atol=40)
    background = _pixel(scatter, image, (5.0, 5.0))
    assert background.max() < 80  # dark background between the dots
    scatter.set_colors(colors[::-1].copy())  # recolor: only the color buffer changes
    image = scatter.canvas.render()
    np.testing.assert_allclose(_pixel(scatter, image, points[0]), [255, 255, 0], atol=40)
    scatter.select([1])
    image = scatter.canvas.render()
    to_canvas = scatter.canvas.scene.node_transform(scatter.view.scene).imap
    x, y = to_canvas(np.array([10.0, 0.0, 0.0, 1.0]))[:2]
    scale = image.shape[1] / scatter.canvas.size[0]
    rim_offset = (scatter.point_size + 2) / 2 + 1.0  # between the center's and the rim's radius
    rim = image[round(y * scale), round((x + rim_offset) * scale), :3]
    assert rim.min() > 200  # the white rim around the selected point
