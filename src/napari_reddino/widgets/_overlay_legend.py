"""The embedding dock's cell-colour overlay: one PCA over every open smear, painted per smear.

Thin over :func:`napari_reddino.explore.cell_colours.session_colours`: gathers the embedded
Labels layers of the viewer (:class:`~napari_reddino.plugin.session.LayerCells`, the cells the
explorer sees), colours them together, paints each smear's cells into an RGBA layer
``"<image> RedDino PCA"`` (one colour per cell, transparent background, placed as its Labels
layer) and shows the legend in the dock: what each colour follows, in words.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np
from qtpy.QtWidgets import QLabel

from napari_reddino import names as nm
from napari_reddino.plugin import layers

SWATCH = {"red": "#e53935", "green": "#43a047", "blue": "#1e88e5"}
CELL_COLOURS_KEY = "reddino_cell_colours"  # the overlay layer's metadata: legend + space
FAINT = 0.35  # objects the colours were not fitted on (not counted: cut, white cells, clumps)


def image_layer_name(labels_layer: Any) -> str:
    """The image a Labels layer segments: its metadata's ``image_layer``, else its name less
    the ``" labels"`` suffix."""
    name = (labels_layer.metadata or {}).get(nm.META_IMAGE_LAYER)
    return str(name) if name else labels_layer.name.removesuffix(" labels")


def colour_open_smears(viewer: Any, space: str, opacity: float = 0.6,
                       visible: bool = True) -> tuple[list[Any], list[str]]:
    """Colour the cells of every embedded Labels layer with one PCA; returns the overlay layers
    (one per smear) and the legend lines. Raises ``SessionError`` when no smear is embedded."""
    from napari_reddino.embed.cell_overlay import paint_cells
    from napari_reddino.explore.cell_colours import session_colours
    from napari_reddino.plugin.session import LayerCells

    cells = LayerCells.from_layers(list(viewer.layers))
    result = session_colours(cells.public_table(), cells.vectors, space)
    layer_of = cells.table["_layer"].to_numpy()
    labels_of = cells.table["label"].to_numpy(np.int64)
    painted = []
    for index, labels_layer in enumerate(cells.layers):
        mine = layer_of == index
        alpha = np.where(result.colours.fitted[mine], 1.0, FAINT)
        rgba = paint_cells(np.asarray(labels_layer.data), labels_of[mine],
                           result.colours.colours[mine], alpha)
        painted.append(_show(viewer, labels_layer, rgba, result, opacity, visible))
    return painted, result.legend


def _show(viewer: Any, labels_layer: Any, rgba: np.ndarray, result: Any, opacity: float,
          visible: bool) -> Any:
    """Add or refresh one smear's overlay, on its Labels layer's pixels (scale, translate)."""
    data, kwargs, _kind = layers.cell_colours_data(
        rgba, image_layer=image_layer_name(labels_layer), scale=labels_layer.scale,
        translate=labels_layer.translate, opacity=opacity, visible=visible,
        metadata={CELL_COLOURS_KEY: {"legend": list(result.legend), "space": result.space}})
    name = kwargs["name"]
    if name in viewer.layers and CELL_COLOURS_KEY not in viewer.layers[name].metadata:
        viewer.layers.remove(name)  # a patch-token overlay: another grid, another kind
    if name in viewer.layers:
        layer = viewer.layers[name]
        layer.data = data
        layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
        layer.metadata = {**layer.metadata, **kwargs["metadata"]}
        layer.visible = visible
    else:
        layer = viewer.add_image(data, **kwargs)
    layer.interpolation2d = "nearest"  # one flat colour per cell, sharp at its edge
    layer.contrast_limits = (0, 255)
    return layer


def legend_html(lines: list[str], space: str) -> str:
    """The legend as rich text: a coloured swatch and the words of each channel."""
    if not lines:
        return ""
    rows = []
    for line in lines:
        channel, _, words = line.partition(": ")
        colour = SWATCH.get(channel, "#888")
        rows.append(f'<span style="color:{colour}">&#9632;</span> <b>{html.escape(channel)}</b>'
                    f": {html.escape(words)}")
    return (f"<b>Cell colours</b> (one PCA of the {html.escape(space)} over all open "
            "smears; the more of a colour, the more so; objects that do not count are "
            "faint):<br>" + "<br>".join(rows))


def colour_cells_of(dock: Any) -> list[Any]:
    """The embedding dock's "Colour cells of all open smears": its space, opacity and
    visibility; the legend into its label, errors as one notification."""
    from napari_reddino.plugin.session import SessionError
    from napari_reddino.widgets._workers import notify_error

    space = dock.colour_by.value
    try:
        painted, legend = colour_open_smears(dock.viewer, space, dock.opacity.value,
                                             dock.overlay.value)
    except (SessionError, ValueError) as exc:
        notify_error("Colouring cells", exc)
        return []
    used = painted[0].metadata[CELL_COLOURS_KEY]["space"] if painted else space
    dock.legend.setText(legend_html(legend, used))
    return painted


def legend_label() -> QLabel:
    label = QLabel("")
    label.setWordWrap(True)
    return label
