"""The explorer dock's layout: its settings (and batch metrics) above, the scatter plot in the
middle, the hovered cell below, in a vertical splitter.

Why: in one scroll area the plot was scrolled out of view as soon as the dock shared its side
of the window with another dock (1600 x 1150 with the labeling dock open). Here only the
settings and the details scroll; the plot keeps at least ``SCATTER_MIN_HEIGHT`` px.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLayout,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from napari_reddino.widgets import scrolling

SCATTER_MIN_HEIGHT = 250  # px: enough to see clusters and drag a lasso
MIN_WIDTH = 380  # the dock's narrowest useful width (the fit test holds it under ~418 px)
SETTINGS_MIN_HEIGHT = 90  # px of settings always shown (the cells line and the switch)
DETAILS_MIN_HEIGHT = 40
DETAILS_HEIGHT = 110  # its thumbnail and first lines
SETTINGS_HEIGHT = 320  # px the settings get at first when the dock is tall enough


def _stack(parts: list[Any]) -> QWidget:
    widget = QWidget()
    layout = QVBoxLayout(widget)
    for part in parts:
        (layout.addLayout if isinstance(part, QLayout) else layout.addWidget)(part)
    return widget


def build_layout(w: Any, mode_row: QHBoxLayout) -> QSplitter:
    """Lay out the explorer ``w`` (an ``ExplorerWidget`` with its controls made)."""
    top = QHBoxLayout()
    top.addWidget(w.cells_label, 1)
    top.addWidget(w.refresh_button)
    projection_box = QGroupBox("Projection")
    form = QFormLayout(projection_box)
    form.addRow("Method", w.method)
    form.addRow("Compare cells in", w.space)
    form.addRow("Neighbors (k)", w.n_neighbors)
    form.addRow(w.project_runner)
    clusters = QGroupBox("Clusters")
    cform = QFormLayout(clusters)
    cform.addRow("Method", w.cluster_method)
    cform.addRow("Clusters (k-means)", w.n_clusters)
    cform.addRow(w.cluster_runner)
    color_row = QFormLayout()
    color_row.addRow("Color by", w.color_column)
    settings = _stack([top, w.counted, projection_box, clusters, color_row, w.legend,
                       w.batch_panel])
    settings.layout().addStretch(1)

    actions = QHBoxLayout()
    for widget in (w.selection_label, w.goto_button, w.to_layer_button, w.clear_button):
        actions.addWidget(widget)
    w.scatter.native.setMinimumHeight(SCATTER_MIN_HEIGHT)
    view = _stack([mode_row, w.scatter.native, w.group_click, actions, w.selection_words])
    view.layout().setStretch(1, 1)  # the plot takes the room
    view.layout().setContentsMargins(9, 0, 9, 0)

    details = _stack([w.hover_panel])  # the hovered cell: collapses when room is short
    details.layout().addStretch(1)

    splitter = QSplitter(Qt.Orientation.Vertical)
    for part, min_height in ((settings, SETTINGS_MIN_HEIGHT), (view, None),
                             (details, DETAILS_MIN_HEIGHT)):
        if min_height is not None:
            part = scrolling(part, MIN_WIDTH, min_height)
            part.setMinimumHeight(min_height)  # not a scroll area's own (taller) minimum
        splitter.addWidget(part)
    for index, (stretch, collapsible) in enumerate(((0, False), (1, False), (0, True))):
        splitter.setStretchFactor(index, stretch)
        splitter.setCollapsible(index, collapsible)
    splitter.setSizes([SETTINGS_HEIGHT, 2 * SETTINGS_HEIGHT, DETAILS_HEIGHT])  # the plot takes
    # the room; the settings scroll, the hovered cell's pane can be dragged shut or open
    outer = QVBoxLayout(w)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(splitter)
    return splitter
