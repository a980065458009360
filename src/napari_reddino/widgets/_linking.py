"""Plot <-> image links: highlight selected cells, find the cell under a click, go to a cell.

Highlighting many cells must not touch pixels: each source Labels layer gets one
overlay Labels layer that *shares its data array* and shows only the selected labels
through a ``DirectLabelColormap`` (everything else transparent). Selecting = swapping
that colour dict, O(selected cells) whatever the image size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import DirectLabelColormap

from napari_reddino.session import CellPool

OVERLAY_KEY = "reddino_overlay_of"  # metadata tag: (role, source layer name)
HIGHLIGHT = (1.0, 0.85, 0.1, 0.9)
TRANSPARENT = (0.0, 0.0, 0.0, 0.0)
CELLS_IN_VIEW = 7.0  # "go to cell" zooms so about this many cell diameters fit the canvas


def label_colormap(colors: Mapping[int, Any]) -> DirectLabelColormap:
    """Colour exactly the given labels; every other label (and 0) transparent."""
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
        opacity=0.8,
    )
    viewer.layers.selection.active = source  # keep the user's layer active
    return layer


class SelectionHighlighter:
    """Shows a pooled selection as coloured cells in per-layer "selection" overlays."""

    def __init__(self, viewer: Any, color=HIGHLIGHT) -> None:
        self.viewer = viewer
        self.color = np.asarray(color, dtype=np.float32)

    def show(self, pool: CellPool, indices: np.ndarray) -> dict[str, np.ndarray]:
        """Highlight the cells at pooled ``indices``; returns {layer name: labels shown}."""
        shown = {}
        for layer_index, labels in pool.labels_by_layer(indices).items():
            source = pool.layers[layer_index]
            overlay = overlay_layer(self.viewer, source, "selection", create=labels.size > 0)
            if overlay is None:
                continue
            overlay.colormap = label_colormap(dict.fromkeys(labels.tolist(), self.color))
            shown[source.name] = labels
        return shown

    def highlighted(self, source: Labels) -> np.ndarray:
        """Labels currently highlighted over ``source`` (sorted)."""
        overlay = overlay_layer(self.viewer, source, "selection", create=False)
        if overlay is None:
            return np.empty(0, dtype=np.int64)
        colors = overlay.colormap.color_dict
        return np.array(
            sorted(k for k, v in colors.items() if k not in (None, 0) and np.asarray(v)[3] > 0),
            dtype=np.int64,
        )


def selection_to_labels(viewer: Any, pool: CellPool, indices: np.ndarray) -> list[Labels]:
    """New Labels layer(s) holding only the selected cells (one per source smear)."""
    made = []
    for layer_index, labels in pool.labels_by_layer(indices).items():
        if labels.size == 0:
            continue
        source = pool.layers[layer_index]
        data = np.asarray(source.data)
        kept = np.where(np.isin(data, labels), data, 0).astype(data.dtype, copy=False)
        features = source.features[source.features["label"].isin(labels)].reset_index(drop=True)
        made.append(
            viewer.add_labels(
                kept, name=f"{source.name} selected cells", scale=source.scale,
                translate=source.translate, affine=source.affine, features=features,
                metadata={"image": source.metadata.get("image", source.name),
                          "subject": source.metadata.get("subject", "unknown")},
            )
        )
    return made


def go_to_cell(viewer: Any, pool: CellPool, index: int) -> np.ndarray:
    """Centre the camera on pooled cell ``index`` and zoom to it; returns its world (y, x)."""
    row = pool.table.iloc[int(index)]
    layer = pool.layers[int(row["_layer"])]
    if {"centroid_y", "centroid_x"} <= set(row.index) and np.isfinite(row["centroid_y"]):
        centre = np.array([row["centroid_y"], row["centroid_x"]], dtype=float)
    else:
        centre = np.argwhere(np.asarray(layer.data) == int(row["label"])).mean(axis=0)
    world = np.asarray(layer.data_to_world(centre), dtype=float)
    viewer.camera.center = tuple(world[-2:])
    area = float(row["area"]) if "area" in row.index and np.isfinite(row["area"]) else 400.0
    diameter = 2.0 * np.sqrt(area / np.pi) * float(np.abs(layer.scale[-1]))
    canvas = getattr(viewer, "_canvas_size", (600, 600))
    viewer.camera.zoom = float(min(canvas)) / (CELLS_IN_VIEW * max(diameter, 1e-6))
    return world[-2:]


def cell_crop(image_layer: Image | None, pool: CellPool, index: int, margin: float = 1.4):
    """RGB uint8 crop around pooled cell ``index`` from its image layer (None if unknown)."""
    if image_layer is None:
        return None
    row = pool.table.iloc[int(index)]
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


def cell_at(viewer: Any, pool: CellPool, world_position) -> int:
    """Pooled index of the cell under a world position (topmost visible layer), else -1."""
    for layer in reversed(list(viewer.layers)):
        if not layer.visible or not any(layer is pooled for pooled in pool.layers):
            continue
        value = layer.get_value(world_position, world=True)
        if value:
            hits = pool.indices_for(layer, [int(value)])
            if hits.size:
                return int(hits[0])
    return -1


def click_callback(get_pool: Callable[[], CellPool | None], on_cell: Callable[[int, bool], None]):
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
        pool = get_pool()
        if dragged or pool is None:
            return
        index = cell_at(viewer, pool, event.position)
        if index >= 0:
            modifiers = getattr(event, "modifiers", None) or ()
            on_cell(index, "Shift" in {getattr(m, "name", str(m)) for m in modifiers})

    return callback
