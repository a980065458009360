"""The docks' "Counted cells only" switch, its "N of M objects counted" line, and the greying.

A differential is a share of intact red cells (:mod:`napari_reddino.segment.counted`): border
cells, white cells, platelets, debris, drawn marks and clumps stay on screen, greyed, so a
user sees what is left out and why (napari's status bar shows the hovered object's
``not_counted_reason``). The switch lives in the viewer's shared session, so the explorer and
the labeling dock always count the same cells.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.colormaps import DirectLabelColormap
from qtpy.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from napari_reddino import names as nm
from napari_reddino.plugin.session import SessionError
from napari_reddino.widgets._linking import OVERLAY_KEY, TRANSPARENT

GREY = (0.3, 0.3, 0.32, 1.0)  # dark: apart from the pale smear and the colored cells
OWN_COLORMAP = "reddino_colormap_before_greying"  # the layer's colormap while we grey it
SWITCH_TIP = ("On: counts, propagation, review, suggestions, the map and clusters use intact red "
              "cells only; border cells, white cells, platelets, debris, marks and clumps stay "
              "on screen, greyed (hover one for the reason). Off: every object is used.")


def not_counted_labels(layer: Any) -> np.ndarray:
    """Label values of the layer's objects that do not count (none without the column)."""
    features = layer.features
    if nm.COUNTED not in features.columns or nm.LABEL not in features.columns:
        return np.zeros(0, np.int64)
    counted = features[nm.COUNTED].fillna(False).astype(bool).to_numpy()
    return features[nm.LABEL].to_numpy(dtype=np.int64)[~counted]


def grey_not_counted(layer: Labels, on: bool = True) -> int:
    """Draw the layer's not-counted objects grey (the others keep their colors); ``on=False``
    gives the layer its own colormap back. Returns how many objects are greyed."""
    excluded = not_counted_labels(layer) if on else np.zeros(0, np.int64)
    own = layer.metadata.get(OWN_COLORMAP)
    if excluded.size == 0:
        if own is not None:
            layer.metadata.pop(OWN_COLORMAP)
            layer.colormap = own
        return 0
    if own is None:
        own = layer.metadata[OWN_COLORMAP] = layer.colormap
    labels = layer.features[nm.LABEL].to_numpy(dtype=np.int64)
    colors = np.asarray(own.map(labels), dtype=np.float32)  # each cell's usual color
    color_dict: dict[int | None, Any] = {None: TRANSPARENT, 0: TRANSPARENT}
    color_dict.update({int(lab): tuple(rgba) for lab, rgba in zip(labels, colors, strict=True)})
    color_dict.update({int(lab): GREY for lab in excluded})
    layer.colormap = DirectLabelColormap(color_dict=color_dict)
    return int(excluded.size)


def grey_viewer(viewer: Any, on: bool) -> None:
    """Grey (or un-grey) every cell Labels layer of the viewer that says what counts."""
    for layer in list(viewer.layers):
        if (isinstance(layer, Labels) and OVERLAY_KEY not in layer.metadata
                and nm.COUNTED in layer.features.columns):
            grey_not_counted(layer, on)


def write_used(session: Any, layer_cells: Any, used: np.ndarray, columns: dict,
               missing: Any) -> None:
    """Write results made over the used cells (a map, clusters); the other cells get
    ``missing``, so none keeps a value from an earlier run over other cells."""
    if session.layer_cells is not layer_cells:
        raise SessionError("the cells changed while it ran; run it again")
    full = {}
    for name, values in columns.items():
        column = np.full(len(layer_cells), missing, dtype=np.asarray(values).dtype)
        column[used] = values
        full[name] = column
    session.write_columns(full)


def exclude_by_hand(session: Any, indices: np.ndarray, excluded: bool = True) -> str:
    """Flag the selected objects as excluded by hand (or lift the flag): a merged pair or a
    stain artifact the segmenter took for a cell. Their labels stay; only counting changes."""
    indices = np.unique(np.asarray(indices, dtype=np.int64))
    if session.layer_cells is None or indices.size == 0:
        return "select objects first (click them or lasso them in the explorer)"
    session.write_columns({nm.EXCLUDED: np.full(indices.size, bool(excluded))}, indices)
    return (f"{indices.size} object(s) " + ("excluded from counts" if excluded
                                             else "no longer excluded by hand")
            + f"; {session.counted_summary()}")


class CountedSwitch(QWidget):
    """"Counted cells only" + "N of M objects counted", bound to the shared session."""

    def __init__(self, viewer: Any, session: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer, self.session = viewer, session
        self.checkbox = QCheckBox("Counted cells only")
        self.checkbox.setToolTip(SWITCH_TIP)
        self.checkbox.setChecked(session.counted_only)
        self.checkbox.toggled.connect(session.set_counted_only)
        self.summary = QLabel("")
        self.summary.setToolTip(SWITCH_TIP)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.checkbox)
        row.addWidget(self.summary, 1)
        session.counted_only_changed.connect(self._on_switch)
        session.layer_cells_changed.connect(self._on_cells)
        session.columns_changed.connect(self._on_columns)
        self._on_cells(session.layer_cells)

    def _on_switch(self, on: bool) -> None:
        if self.checkbox.isChecked() != on:
            self.checkbox.blockSignals(True)
            self.checkbox.setChecked(on)
            self.checkbox.blockSignals(False)
        grey_viewer(self.viewer, on)

    def _on_cells(self, _layer_cells: Any = None) -> None:
        self.summary.setText(self.session.counted_summary())
        if _layer_cells is not None:
            grey_viewer(self.viewer, self.session.counted_only)

    def _on_columns(self, columns: list[str]) -> None:
        if nm.COUNTED in columns:
            self._on_cells(self.session.layer_cells)

    def text(self) -> str:
        """The "N of M objects counted" line as shown."""
        return self.summary.text()
