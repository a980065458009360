"""Smears dock: one row per smear, whose check box shows or hides all its layers at once.

Why: napari's layer list has no groups in its public API, and each smear brings an image, its
cells and the docks' overlays (selection rings, class colors, the PCA image): 20 smears make a
list of 40 to 100 rows. Here each smear is one row; which smear a layer belongs to is read from
the layer contract (:func:`napari_reddino.plugin.layers.smear_groups`). Showing a smear again
brings back the layers that were shown when it was hidden (an overlay the user had off stays
off), or its image and cells.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_reddino.plugin.layers import is_overlay, smear_groups
from napari_reddino.widgets import tab_when_crowded


class SmearListWidget(QWidget):
    """Each smear of the viewer as one row: tick to show all its layers, untick to hide them."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.groups: dict[str, list] = {}
        self._shown_before: dict[str, set[str]] = {}  # per hidden smear: its layers that were on
        self._updating = False
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.list = QListWidget()
        self.list.setMinimumHeight(120)
        self.list.itemChanged.connect(self._on_item_changed)
        self.list.itemDoubleClicked.connect(lambda item: self.show_only(item.data(_SMEAR)))
        self.show_all_button = QPushButton("Show all")
        self.show_all_button.clicked.connect(lambda: self.set_all(True))
        self.hide_all_button = QPushButton("Hide all")
        self.hide_all_button.clicked.connect(lambda: self.set_all(False))
        self.only_button = QPushButton("Only the selected")
        self.only_button.setToolTip("Show the selected smear, hide the others (or double-click)")
        self.only_button.clicked.connect(self._only_selected)
        buttons = QHBoxLayout()
        for button in (self.show_all_button, self.hide_all_button, self.only_button):
            buttons.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.summary)
        layout.addWidget(self.list, 1)
        layout.addLayout(buttons)

        self._timer = QTimer(self)  # many layer events (a run folder opening) make one update
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.rebuild)
        events = self.viewer.layers.events
        for event in (events.inserted, events.removed, events.moved):
            event.connect(self._on_layers_changed)
        self._followed: list[Any] = []
        self.rebuild()

    # -- reading the viewer ------------------------------------------------------------------
    def _on_layers_changed(self, _event: Any = None) -> None:
        self._timer.start()

    def _follow(self, layers: list) -> None:
        for layer in self._followed:
            for event in (layer.events.visible, layer.events.name):
                event.disconnect(self._on_layers_changed)
        self._followed = layers
        for layer in layers:
            for event in (layer.events.visible, layer.events.name):
                event.connect(self._on_layers_changed)

    def rebuild(self) -> None:
        """Re-read the smears and their layers from the viewer (one row per smear)."""
        self.groups = smear_groups(self.viewer.layers)
        self._follow([layer for layers in self.groups.values() for layer in layers])
        current = self.list.currentItem()
        chosen = current.data(_SMEAR) if current is not None else None
        self._updating = True
        self.list.clear()
        for smear, layers in self.groups.items():
            item = QListWidgetItem(f"{smear}  ({len(layers)} layers)")
            item.setData(_SMEAR, smear)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(self._state(layers))
            item.setToolTip("\n".join(layer.name for layer in layers))
            self.list.addItem(item)
            if smear == chosen:
                self.list.setCurrentItem(item)
        self._updating = False
        n_layers = sum(len(layers) for layers in self.groups.values())
        self.summary.setText(f"{len(self.groups)} smear(s), {n_layers} of their layers; "
                             "tick to show, double-click to show only that one")

    @staticmethod
    def _state(layers: list) -> Qt.CheckState:
        own = [layer for layer in layers if not is_overlay(layer)] or layers
        shown = sum(bool(layer.visible) for layer in own)
        if shown == len(own):
            return Qt.CheckState.Checked
        return Qt.CheckState.Unchecked if shown == 0 else Qt.CheckState.PartiallyChecked

    # -- showing and hiding ------------------------------------------------------------------
    def set_smear_visible(self, smear: str, visible: bool) -> None:
        """Show or hide every layer of ``smear`` (showing brings back what was shown)."""
        layers = self.groups.get(smear, [])
        if not visible:
            shown = {layer.name for layer in layers if layer.visible}
            if shown:
                self._shown_before[smear] = shown
            for layer in layers:
                layer.visible = False
        else:
            before = self._shown_before.pop(smear, None)
            if not before or not any(layer.name in before for layer in layers):
                before = {layer.name for layer in layers if not is_overlay(layer)}
            for layer in layers:
                if layer.name in before:
                    layer.visible = True
        self._on_layers_changed()

    def set_all(self, visible: bool) -> None:
        for smear in list(self.groups):
            self.set_smear_visible(smear, visible)

    def show_only(self, smear: str | None) -> None:
        """Show ``smear`` and hide every other one."""
        if smear not in self.groups:
            return
        for other in list(self.groups):
            if other != smear:
                self.set_smear_visible(other, False)
        self.set_smear_visible(smear, True)

    def _only_selected(self) -> None:
        item = self.list.currentItem()
        if item is not None:
            self.show_only(item.data(_SMEAR))

    def _on_item_changed(self, item: QListWidgetItem) -> None:
        if self._updating:
            return
        self.set_smear_visible(item.data(_SMEAR), item.checkState() != Qt.CheckState.Unchecked)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        QTimer.singleShot(0, lambda: tab_when_crowded(self))  # no room below the other docks

    def closeEvent(self, event: Any) -> None:
        events = self.viewer.layers.events
        for signal in (events.inserted, events.removed, events.moved):
            signal.disconnect(self._on_layers_changed)
        self._follow([])
        super().closeEvent(event)


_SMEAR = Qt.ItemDataRole.UserRole
