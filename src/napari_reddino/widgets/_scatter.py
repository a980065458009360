"""A GPU scatter plot that stays fluid at 250k cells (vispy, inside a Qt dock).

Every point is one GL point sprite of a minimal shader (:class:`DotsVisual`): vispy's
``Markers`` evaluates a symbol's distance field with antialiasing for every pixel of every
marker, which at 250k points took seconds per frame in software OpenGL (Xvfb, remote
desktops) and ~10x more than a flat dot on a GPU. Recoloring replaces the color buffer
only. The selection is a second, small dots visual on top (a white disc under a colored
one), so selecting never touches the 250k-point buffers. Hover uses a cKDTree on the
2-D coordinates and is throttled. Modes: ``"pan"`` (drag pans, wheel zooms, click picks
one point), ``"rectangle"`` and ``"lasso"`` (drag draws the shape; Shift adds to the
selection). Signals: ``selection_changed(indices)``, ``hovered(index)`` (-1 = none).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
from psygnal import Signal
from scipy.spatial import cKDTree
from skimage.measure import points_in_poly
from vispy import gloo, scene
from vispy.scene.cameras import PanZoomCamera
from vispy.scene.visuals import create_visual_node
from vispy.visuals import Visual

MODES = ("pan", "rectangle", "lasso")
BACKGROUND = "#262930"  # napari's dark theme
HOVER_RADIUS_PX = 8.0
HOVER_INTERVAL_S = 0.03
CLICK_SLOP_PX = 4.0


_VERTEX = """
attribute vec2 a_position;
attribute vec4 a_color;
uniform float u_size;
varying vec4 v_color;
void main() {
    gl_Position = $transform(vec4(a_position, 0.0, 1.0));
    gl_PointSize = u_size;
    v_color = a_color;
}
"""
_FRAGMENT = """
varying vec4 v_color;
void main() {
    vec2 d = gl_PointCoord - vec2(0.5);
    if (dot(d, d) > 0.25) discard;  // round dots: drop the sprite's corners
    gl_FragColor = v_color;
}
"""


class DotsVisual(Visual):
    """Flat round dots of one size, one color each: the cheapest way GL draws N points."""

    def __init__(self) -> None:
        super().__init__(vcode=_VERTEX, fcode=_FRAGMENT)
        self._positions = gloo.VertexBuffer(np.zeros((0, 2), np.float32))
        self._colors = gloo.VertexBuffer(np.zeros((0, 4), np.float32))
        self._bounds = np.zeros((2, 2), np.float32)
        self._count = 0
        self.shared_program["a_position"] = self._positions
        self.shared_program["a_color"] = self._colors
        self.shared_program["u_size"] = 5.0
        self._draw_mode = "points"
        self.set_gl_state("translucent", depth_test=False)

    def set_data(self, positions=None, colors=None, size: float | None = None) -> None:
        """Replace positions (N, 2), colors (N, 4) or the size in pixels, whichever is given."""
        if positions is not None:
            positions = np.ascontiguousarray(positions, dtype=np.float32)
            self._positions.set_data(positions)
            self._count = len(positions)
            if self._count:
                self._bounds = np.stack([positions.min(axis=0), positions.max(axis=0)])
        if colors is not None:
            colors = np.ascontiguousarray(colors, dtype=np.float32)
            if colors.shape == (4,):
                colors = np.broadcast_to(colors, (self._count, 4)).copy()
            self._colors.set_data(colors)
        if size is not None:
            self.shared_program["u_size"] = float(size)
        self.update()

    def _prepare_transforms(self, view) -> None:
        view.view_program.vert["transform"] = view.get_transform()

    def _prepare_draw(self, view) -> bool:
        return self._count > 0

    def _compute_bounds(self, axis: int, view):
        return tuple(self._bounds[:, axis]) if axis < 2 and self._count else None


Dots = create_visual_node(DotsVisual)


def default_point_size(n_points: int) -> float:
    """Big dots for a few hundred cells, fine ones for hundreds of thousands."""
    return float(np.clip(11.0 - 1.6 * np.log10(max(n_points, 1)), 2.5, 9.0))


class ScatterCanvas:
    """vispy canvas with one point per cell; put ``.native`` into a Qt layout."""

    selection_changed = Signal(object)  # np.ndarray of point indices
    hovered = Signal(int)  # point index under the mouse, -1 when none

    def __init__(self, parent=None) -> None:
        self.canvas = scene.SceneCanvas(
            keys=None, bgcolor=BACKGROUND, size=(360, 320), parent=parent, show=False
        )
        self.canvas.native.setMinimumSize(220, 200)
        self.view = self.canvas.central_widget.add_view()
        self.view.camera = PanZoomCamera(aspect=1)
        self.markers = Dots(parent=self.view.scene)
        self.selected_rims = Dots(parent=self.view.scene)  # white discs under the selection
        self.selected_markers = Dots(parent=self.view.scene)
        self.hover_marker = scene.visuals.Markers(parent=self.view.scene)
        self.shape = scene.visuals.Line(color="white", width=1.5, parent=self.view.scene)
        for order, visual in enumerate((self.markers, self.selected_rims, self.selected_markers,
                                        self.hover_marker, self.shape)):
            visual.order = order
            visual.set_gl_state("translucent", depth_test=False)
        for visual in (self.selected_rims, self.selected_markers, self.hover_marker, self.shape):
            visual.visible = False
        self.points = np.zeros((0, 2), dtype=np.float32)
        self.shown = np.zeros(0, dtype=bool)  # points with coordinates (drawn, pickable)
        self.colors = np.zeros((0, 4), dtype=np.float32)
        self.selection = np.empty(0, dtype=np.int64)
        self.hovered_index = -1
        self.point_size = 6.0
        self._tree: cKDTree | None = None
        self._mode = "pan"
        self._press_pos: np.ndarray | None = None
        self._max_moved = 0.0  # farthest the pointer got from the press (px): a click or a drag
        self._path: list[np.ndarray] = []
        self._last_hover = 0.0
        self.canvas.events.mouse_press.connect(self._on_press)
        self.canvas.events.mouse_move.connect(self._on_move)
        self.canvas.events.mouse_release.connect(self._on_release)

    # --- data -----------------------------------------------------------------------
    @property
    def native(self):
        return self.canvas.native

    def set_points(self, points: np.ndarray, colors: np.ndarray | None = None) -> None:
        """Show new coordinates (N, 2); clears the selection and fits the view.

        A point with NaN coordinates (a cell left out of the map) keeps its index, so indices
        stay the cells' rows, but is never drawn, hovered or selected on the plot.
        """
        points = np.asarray(points, dtype=np.float32)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"scatter needs (N, 2) coordinates, got shape {points.shape}")
        self.points = points
        self.shown = np.isfinite(points).all(axis=1)
        self._tree = None
        self.point_size = default_point_size(len(points))
        n = len(points)
        self.colors = (
            np.tile(np.array([[0.6, 0.8, 1.0, 0.8]], np.float32), (n, 1))
            if colors is None
            else self._check_colors(colors)
        )
        self.selection = np.empty(0, dtype=np.int64)
        self._draw_points()
        self._draw_selection()
        self.reset_view()

    def set_colors(self, colors: np.ndarray) -> None:
        """Recolor every point: only the color buffer changes."""
        self.colors = self._check_colors(colors)
        if self.shown.any():
            self.markers.set_data(colors=self.colors[self.shown])
        self._draw_selection()

    def _pixels(self, size: float) -> float:
        """Logical pixels to framebuffer pixels (HiDPI screens)."""
        return size * float(getattr(self.canvas, "pixel_scale", 1.0) or 1.0)

    def _check_colors(self, colors: np.ndarray) -> np.ndarray:
        colors = np.asarray(colors, dtype=np.float32)
        if colors.shape != (len(self.points), 4):
            raise ValueError(f"need ({len(self.points)}, 4) RGBA colors, got {colors.shape}")
        return colors

    def _draw_points(self) -> None:
        if not self.shown.any():
            self.markers.visible = False
            return
        self.markers.visible = True
        self.markers.set_data(self.points[self.shown], self.colors[self.shown],
                              self._pixels(self.point_size))

    def reset_view(self) -> None:
        if not self.shown.any():
            return
        shown = self.points[self.shown]
        low, high = shown.min(axis=0), shown.max(axis=0)
        pad = np.maximum((high - low) * 0.05, 1e-3)
        self.view.camera.set_range(
            x=(low[0] - pad[0], high[0] + pad[0]),
            y=(low[1] - pad[1], high[1] + pad[1]),
            z=(-1, 1),
            margin=0,
        )

    # --- selection ------------------------------------------------------------------
    def select(self, indices: Sequence[int] | np.ndarray, *, emit: bool = True) -> np.ndarray:
        """Make ``indices`` the selection (drawn on top); emits unless ``emit=False``."""
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        if indices.size and (indices[0] < 0 or indices[-1] >= len(self.points)):
            raise IndexError(f"point index out of range 0..{len(self.points) - 1}")
        self.selection = indices
        self._draw_selection()
        if emit:
            self.selection_changed.emit(indices)
        return indices

    def select_rectangle(self, corner_a, corner_b, *, add: bool = False) -> np.ndarray:
        """Select the points inside the axis-aligned box spanned by two data corners."""
        low = np.minimum(corner_a, corner_b)
        high = np.maximum(corner_a, corner_b)
        inside = np.all((self.points >= low) & (self.points <= high), axis=1)
        return self._combine(np.flatnonzero(inside), add)

    def select_polygon(self, vertices, *, add: bool = False) -> np.ndarray:
        """Select the points inside a polygon (lasso) given in data coordinates."""
        vertices = np.asarray(vertices, dtype=np.float64)
        if vertices.ndim != 2 or vertices.shape[1] != 2 or len(vertices) < 3:
            raise ValueError("a lasso needs at least 3 (x, y) vertices")
        low, high = vertices.min(axis=0), vertices.max(axis=0)
        candidates = np.flatnonzero(np.all((self.points >= low) & (self.points <= high), axis=1))
        inside = points_in_poly(self.points[candidates], vertices)
        return self._combine(candidates[inside], add)

    def point_at(self, xy, radius: float) -> int:
        """Index of the nearest point within ``radius`` (data units) of ``xy``, else -1."""
        if not self.shown.any():
            return -1
        if self._tree is None:
            self._tree = cKDTree(self.points[self.shown])
        distance, index = self._tree.query(np.asarray(xy, dtype=np.float64)[:2])
        return int(np.flatnonzero(self.shown)[index]) if distance <= radius else -1

    def _combine(self, indices: np.ndarray, add: bool) -> np.ndarray:
        if add:
            indices = np.union1d(self.selection, indices)
        return self.select(indices)

    def _draw_selection(self) -> None:
        drawn = self.selection[self.shown[self.selection]]  # cells off the map have no dot
        self.selected_markers.visible = self.selected_rims.visible = drawn.size > 0
        if not drawn.size:
            return
        points = self.points[drawn]
        self.selected_rims.set_data(points, np.array([1.0, 1.0, 1.0, 1.0], np.float32),
                                    self._pixels(self.point_size + 5))
        self.selected_markers.set_data(points, self.colors[drawn],
                                       self._pixels(self.point_size + 2))

    def set_hovered(self, index: int) -> None:
        """Mark one point (or none with -1) as hovered and emit ``hovered``."""
        if index == self.hovered_index:
            return
        self.hovered_index = index
        self.hover_marker.visible = index >= 0
        if index >= 0:
            self.hover_marker.set_data(
                self.points[index : index + 1],
                face_color=(0, 0, 0, 0),
                edge_color="yellow",
                edge_width=2,
                size=self.point_size + 10,
            )
        self.hovered.emit(index)

    # --- mouse ----------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self._mode = mode
        self.view.camera.interactive = mode == "pan"

    def to_data(self, canvas_pos) -> np.ndarray:
        """Canvas pixel position -> data (x, y)."""
        transform = self.canvas.scene.node_transform(self.view.scene)
        return transform.map(np.asarray(canvas_pos, dtype=np.float64)[:2])[:2]

    def _pixel_radius(self, canvas_pos, pixels: float) -> float:
        a = self.to_data(canvas_pos)
        b = self.to_data(np.asarray(canvas_pos[:2], dtype=np.float64) + np.array([pixels, 0.0]))
        return float(np.linalg.norm(b - a))

    def _on_press(self, event) -> None:
        if event.button != 1:
            return
        self._press_pos = np.asarray(event.pos[:2], dtype=np.float64)
        self._max_moved = 0.0
        self._path = [self.to_data(event.pos)]

    def _on_move(self, event) -> None:
        if self._press_pos is not None and self._mode != "pan":
            away = np.asarray(event.pos[:2], dtype=np.float64) - self._press_pos
            self._max_moved = max(self._max_moved, float(np.linalg.norm(away)))
            self._path.append(self.to_data(event.pos))
            self._draw_shape()
            return
        now = time.perf_counter()
        if event.is_dragging or now - self._last_hover < HOVER_INTERVAL_S:
            return
        self._last_hover = now
        radius = self._pixel_radius(event.pos, HOVER_RADIUS_PX)
        self.set_hovered(self.point_at(self.to_data(event.pos), radius))

    def _on_release(self, event) -> None:
        if self._press_pos is None:
            return
        add = "Shift" in [getattr(key, "name", key) for key in (event.modifiers or ())]
        moved = np.linalg.norm(np.asarray(event.pos[:2], dtype=np.float64) - self._press_pos)
        moved = max(moved, self._max_moved)  # a lasso closed near its start is no click
        self._press_pos = None
        self.shape.visible = False
        if moved <= CLICK_SLOP_PX:
            hit = self.point_at(self.to_data(event.pos), self._pixel_radius(event.pos, 8))
            if hit >= 0:
                self._combine(np.array([hit]), add)
            elif not add:
                self.select([])
        elif self._mode == "rectangle":
            self.select_rectangle(self._path[0], self.to_data(event.pos), add=add)
        elif self._mode == "lasso" and len(self._path) >= 3:
            self.select_polygon(np.array(self._path), add=add)

    def _draw_shape(self) -> None:
        if self._mode == "rectangle":
            (x0, y0), (x1, y1) = self._path[0], self._path[-1]
            outline = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        else:
            outline = np.vstack([*self._path, self._path[0]])
        self.shape.set_data(pos=outline.astype(np.float32))
        self.shape.visible = True
