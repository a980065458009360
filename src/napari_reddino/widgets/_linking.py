"""Plot <-> image links: highlight selected cells, find the cell under a click, go to a cell.

Highlighting a selection must not touch pixels: the selected cells get rings in a
Points layer per smear (O(selected cells) whatever the image size). The class view
(labeling dock) is a Labels overlay that *shares the source's data array* and colors
each labeled cell through a ``DirectLabelColormap``, made only for the smears that have
labeled cells (20 smears with labels on 3: 3 overlays, not 20).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from napari.layers import Image, Labels, Points
from napari.utils.colormaps import DirectLabelColormap
from scipy import ndimage

from napari_reddino.plugin.layers import OVERLAY_OF as OVERLAY_KEY  # (role, source layer)
from napari_reddino.plugin.session import LayerCells

HIGHLIGHT = (1.0, 0.85, 0.1, 0.9)
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
CONTOUR_KEY = "reddino_contour_before_class_view"  # the labels layer's own contour setting
CELLS_IN_VIEW = 7.0  # "go to cell" zooms so about this many cell diameters fit the canvas


def label_colormap(colors: Mapping[int, Any]) -> DirectLabelColormap:
    """Color exactly the given labels; every other label (and 0) transparent."""
    color_dict: dict[int | None, Any] = {None: TRANSPARENT, 0: TRANSPARENT}
    color_dict.update({int(label): color for label, color in colors.items()})
    return DirectLabelColormap(color_dict=color_dict)


def overlay_layer(viewer: Any, source: Labels, role: str, *, create: bool = True) -> Labels | None:
    """The overlay of ``source`` for ``role`` ("selection", "classes"), sharing its data."""
    tag = (role, source.name)
    for layer in viewer.layers:
        if isinstance(layer, Labels) and tuple(layer.metadata.get(OVERLAY_KEY, ())) == tag:
            if layer.data is not source.data:
                layer.data = source.data
            return layer
    if not create:
        return None
    layer = viewer.add_labels(
        source.data,
        name=f"{source.name} {role}",
        scale=source.scale,
        translate=source.translate,
        rotate=source.rotate,
        shear=source.shear,
        affine=source.affine,
        metadata={OVERLAY_KEY: tag},
        colormap=label_colormap({}),
        opacity=0.55,
    )
    follow_visibility(layer, source)
    viewer.layers.selection.active = source  # keep the user's layer active
    return layer


def follow_visibility(overlay: Any, source: Labels) -> None:
    """Show ``overlay`` only while ``source`` is visible (stacked smears stay readable).

    ``overlay.metadata["enabled"] = False`` keeps it hidden whatever the source does.
    """

    def update(_event: Any = None) -> None:
        overlay.visible = bool(source.visible and overlay.metadata.get("enabled", True))

    source.events.visible.connect(update)
    update()


def show_classes(viewer: Any, layer_cells: LayerCells | None, classes: np.ndarray | None,
                 colors: Mapping[str, Any]) -> None:
    """The class view: an overlay on each smear that has labeled cells, coloring each with its
    class color; a smear without any has none (its overlay is removed), so the layer list
    grows only where cells are labeled. ``classes`` None hides the view and gives each layer
    its own contour setting back."""
    if layer_cells is None or classes is None:
        for layer in [] if layer_cells is None else layer_cells.layers:
            overlay = overlay_layer(viewer, layer, "classes", create=False)
            if overlay is not None:
                overlay.metadata["enabled"] = False
                overlay.visible = False
            _restore_contour(layer)
        return
    layer_of = layer_cells.table["_layer"].to_numpy()
    labels = layer_cells.table["label"].to_numpy()
    labeled = np.isin(classes, list(colors))
    for layer_index, layer in enumerate(layer_cells.layers):
        mine = (layer_of == layer_index) & labeled
        if not mine.any():  # nothing to color here: no layer for it
            overlay = overlay_layer(viewer, layer, "classes", create=False)
            if overlay is not None:
                viewer.layers.remove(overlay)
            _restore_contour(layer)
            continue
        overlay = overlay_layer(viewer, layer, "classes")
        if CONTOUR_KEY not in layer.metadata:  # outlines, so class colors read clean
            layer.metadata[CONTOUR_KEY] = layer.contour
            layer.contour = max(1, layer.contour)
        overlay.metadata["enabled"] = True
        overlay.visible = layer.visible
        overlay.colormap = label_colormap(
            {int(lab): colors[c] for lab, c in zip(labels[mine], classes[mine])}
        )


def _restore_contour(layer: Labels) -> None:
    if CONTOUR_KEY in layer.metadata:  # the user's own look comes back
        layer.contour = layer.metadata.pop(CONTOUR_KEY)


def show_smear(viewer: Any, layer_cells: LayerCells, layer_index: int) -> None:
    """Make one pooled smear (labels + its image) visible, hiding the other hidden-able ones.

    Smears usually lie on top of each other at the origin; going to a cell of a hidden
    smear shows that smear instead of a cell of another one under the same pixels.
    """
    target = layer_cells.layers[layer_index]
    if target.visible:
        return
    for i, layer in enumerate(layer_cells.layers):
        image = image_layer_for(viewer, layer)
        for shown in (layer, image):
            if shown is not None:
                shown.visible = i == layer_index


class SelectionHighlighter:
    """Shows a pooled selection as rings around the selected cells, one Points layer per smear.

    A ring per selected cell (at its centroid, sized by its area) costs O(selected cells):
    nothing is recomputed over the smear's pixels, so a selection among 250k cells shows up
    at once, whereas recoloring a Labels layer makes napari re-map every pixel.
    """

    def __init__(self, viewer: Any, color=HIGHLIGHT) -> None:
        self.viewer = viewer
        self.color = np.asarray(color, dtype=np.float32)

    def show(self, layer_cells: LayerCells, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Ring the cells at pooled ``indices``; returns {layer name: labels shown}."""
        indices = np.asarray(indices, dtype=np.int64)
        layer_of = layer_cells.table["_layer"].to_numpy()[indices]
        centers, diameters = cell_geometry(layer_cells, indices)
        labels = layer_cells.table["label"].to_numpy()[indices]
        shown = {}
        for layer_index, source in enumerate(layer_cells.layers):
            mine = layer_of == layer_index
            ring = self._rings(source, create=bool(mine.any()))
            if ring is None:
                continue
            ring.data = centers[mine]
            ring.features = pd.DataFrame({"label": labels[mine]})
            if mine.any():
                ring.size = diameters[mine] * 1.25
                ring.border_color = self.color
            shown[source.name] = labels[mine]
        return shown

    def _rings(self, source: Labels, *, create: bool) -> Points | None:
        tag = ("selection", source.name)
        for layer in self.viewer.layers:
            if isinstance(layer, Points) and tuple(layer.metadata.get(OVERLAY_KEY, ())) == tag:
                return layer
        if not create:
            return None
        layer = self.viewer.add_points(
            np.zeros((0, 2)),
            name=f"{source.name} selection",
            scale=source.scale[-2:],
            translate=source.translate[-2:],
            face_color="transparent",
            border_color=self.color,
            border_width=0.12,
            border_width_is_relative=True,
            metadata={OVERLAY_KEY: tag},
            features=pd.DataFrame({"label": np.zeros(0, int)}),
        )
        layer.current_border_color = tuple(self.color)
        follow_visibility(layer, source)
        self.viewer.layers.selection.active = source  # keep the user's layer active
        return layer

    def highlighted(self, source: Labels) -> np.ndarray:
        """Labels currently ringed over ``source`` (sorted)."""
        ring = self._rings(source, create=False)
        if ring is None:
            return np.empty(0, dtype=np.int64)
        return np.sort(ring.features["label"].to_numpy(dtype=np.int64))


def cell_geometry(layer_cells: LayerCells, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Data-space (y, x) centroid and diameter of gathered cells (from the cell table)."""
    table = layer_cells.table
    if {"centroid_y", "centroid_x"} <= set(table.columns):
        centers = table[["centroid_y", "centroid_x"]].to_numpy(dtype=np.float64)[indices]
    else:  # tables without geometry: measure the selected cells in their label images
        centers = np.zeros((len(indices), 2))
        layer_of = table["_layer"].to_numpy()[indices]
        for layer_index in np.unique(layer_of):
            data = np.asarray(layer_cells.layers[layer_index].data)
            mine = layer_of == layer_index
            wanted = table["label"].to_numpy()[indices[mine]]
            centers[mine] = ndimage.center_of_mass(data > 0, data, wanted)
    area = (
        table["area"].to_numpy(dtype=np.float64)[indices]
        if "area" in table.columns
        else np.full(len(indices), 400.0)
    )
    return centers, 2.0 * np.sqrt(np.nan_to_num(area, nan=400.0) / np.pi)


def selection_to_labels(viewer: Any, layer_cells: LayerCells, indices: np.ndarray) -> list[Labels]:
    """New Labels layer(s) holding only the selected cells (one per source smear)."""
    made = []
    for layer_index, labels in layer_cells.labels_by_layer(indices).items():
        if labels.size == 0:
            continue
        source = layer_cells.layers[layer_index]
        data = np.asarray(source.data)
        kept = np.where(np.isin(data, labels), data, 0).astype(data.dtype, copy=False)
        features = source.features[source.features["label"].isin(labels)].reset_index(drop=True)
        made.append(
            viewer.add_labels(
                kept,
                name=f"{source.name} selected cells",
                scale=source.scale,
                translate=source.translate,
                affine=source.affine,
                features=features,
                metadata={
                    "image": source.metadata.get("image", source.name),
                    "subject": source.metadata.get("subject", "unknown"),
                },
            )
        )
    return made


def go_to_cell(viewer: Any, layer_cells: LayerCells, index: int) -> np.ndarray:
    """Center the camera on pooled cell ``index`` and zoom to it; returns its world (y, x)."""
    row = layer_cells.table.iloc[int(index)]
    layer = layer_cells.layers[int(row["_layer"])]
    show_smear(viewer, layer_cells, int(row["_layer"]))
    if {"centroid_y", "centroid_x"} <= set(row.index) and np.isfinite(row["centroid_y"]):
        center = np.array([row["centroid_y"], row["centroid_x"]], dtype=float)
    else:
        center = np.argwhere(np.asarray(layer.data) == int(row["label"])).mean(axis=0)
    world = np.asarray(layer.data_to_world(center), dtype=float)
    camera = camera_of(viewer)
    camera.center = tuple(world[-2:])
    area = float(row["area"]) if "area" in row.index and np.isfinite(row["area"]) else 400.0
    diameter = 2.0 * np.sqrt(area / np.pi) * float(np.abs(layer.scale[-1]))
    canvas = getattr(getattr(viewer, "canvas", None), "size", None) or (600, 600)
    camera.zoom = float(min(canvas)) / (CELLS_IN_VIEW * max(diameter, 1e-6))
    return world[-2:]


def camera_of(viewer: Any) -> Any:
    """The viewer's camera: ``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None else viewer.camera


def cell_crop(image_layer: Image | None, layer_cells: LayerCells, index: int, margin: float = 1.4):
    """RGB uint8 crop around pooled cell ``index`` from its image layer (None if unknown)."""
    if image_layer is None:
        return None
    row = layer_cells.table.iloc[int(index)]
    if not {"centroid_y", "centroid_x"} <= set(row.index):
        return None
    data = np.asarray(image_layer.data)
    area = float(row["area"]) if "area" in row.index else 400.0
    half = max(int(margin * np.sqrt(max(area, 1.0) / np.pi)), 4)
    cy, cx = int(np.rint(row["centroid_y"])), int(np.rint(row["centroid_x"]))
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    crop = data[y0 : cy + half + 1, x0 : cx + half + 1]
    if crop.size == 0:
        return None
    if crop.ndim == 2:
        crop = np.repeat(crop[..., None], 3, axis=2)
    crop = crop[..., :3]
    if crop.dtype != np.uint8:
        low, high = np.nanmin(crop), np.nanmax(crop)
        crop = ((crop - low) / max(high - low, 1e-9) * 255).astype(np.uint8)
    return np.ascontiguousarray(crop)


def image_layer_for(viewer: Any, labels_layer: Labels) -> Image | None:
    """The image a Labels layer was segmented from (``metadata["image_layer"]``)."""
    name = labels_layer.metadata.get("image_layer")
    if name in viewer.layers and isinstance(viewer.layers[name], Image):
        return viewer.layers[name]
    return None


def cell_at(viewer: Any, layer_cells: LayerCells, world_position) -> int:
    """Pooled index of the cell under a world position (topmost visible layer), else -1."""
    for layer in reversed(list(viewer.layers)):
        if not layer.visible or not any(layer == pooled for pooled in layer_cells.layers):
            continue
        value = layer.get_value(world_position, world=True)
        if value:
            hits = layer_cells.indices_for(layer, [int(value)])
            if hits.size:
                return int(hits[0])
    return -1


def click_callback(get_pool: Callable[[], LayerCells | None], on_cell: Callable[[int, bool], None]):
    """A viewer mouse-drag callback: a click (no drag) on a pooled cell calls ``on_cell``.

    Only in pan/zoom mode, so painting and picking keep working in the layer controls.
    """

    def callback(viewer, event):
        if getattr(event, "button", 1) != 1:
            return
        active = viewer.layers.selection.active
        if getattr(active, "mode", "pan_zoom") != "pan_zoom":
            return
        yield
        dragged = False
        while event.type == "mouse_move":
            dragged = True
            yield
        layer_cells = get_pool()
        if dragged or layer_cells is None:
            return
        index = cell_at(viewer, layer_cells, event.position)
        if index >= 0:
            modifiers = getattr(event, "modifiers", None) or ()
            on_cell(index, "Shift" in {getattr(m, "name", str(m)) for m in modifiers})

    return callback
