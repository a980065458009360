"""What napari says about classes: the number keys in its help line, the class first on hover.

napari's Labels layer binds 1-7 to its own modes and writes them into ``layer.help``, the right
side of the status bar ("use <2> for activate the paint brush"). On a pooled layer the labeling
dock's binding wins (a layer's own ``bind_key`` comes before its class keymap), so the help line
must say what the keys really do, and a key press says in the status bar which class it set.
napari's hover status lists a cell's features in column order; the class goes first there, or
it is cut off behind 60 morphology numbers in the status bar.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from napari_reddino import names as nm

CLASS_FIRST = (nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE)


def class_columns_first(layers: list[Any]) -> None:
    """Move the class columns to the front of each layer's ``features`` (no data changes)."""
    for layer in layers:
        columns = list(layer.features.columns)
        first = [c for c in CLASS_FIRST if c in columns]
        if first and columns[: len(first)] != first:
            layer.features = layer.features[first + [c for c in columns if c not in first]]


class ClassKeys:
    """Keys 1-9 on the viewer and on every pooled Labels layer, and the help line that says so.

    ``on_key(name)`` does the labeling and returns what happened ("" when the key was not ours);
    the viewer's status then reads ``<2> spherocyte: <what happened>``.
    """

    def __init__(self, viewer: Any, on_key: Callable[[str], str]) -> None:
        self.viewer = viewer
        self._on_key = on_key
        self._bound: list[tuple[Any, str]] = []
        self._shortcuts: dict[str, str] = {}
        self._layers: list[Any] = []  # pooled layers whose help line is ours
        self._napari_help: list[list] = []  # [layer, napari's own help], to give back

    def bind(self, shortcuts: dict[str, str], layers: list[Any]) -> None:
        """(Re)bind ``shortcuts`` (key -> class) on the viewer and ``layers``; layers that left
        get napari's keys and help line back."""
        targets = [self.viewer, *layers]
        for target, key in self._bound:
            if key not in shortcuts or not _among(target, targets):
                target.bind_key(key, None)
        self._bound = []
        self._shortcuts = dict(shortcuts)
        for target in targets:
            for key, name in shortcuts.items():
                target.bind_key(key, self._press(key, name), overwrite=True)
                self._bound.append((target, key))
        for layer in self._layers:
            if not _among(layer, layers):
                self._give_back(layer)
        self._layers = list(layers)
        for layer in self._layers:
            if self._entry(layer) is None:
                self._napari_help.append([layer, layer.help])
                layer.events.mode.connect(self._on_mode)  # after napari's own help update
            self._apply_help(layer)

    def release(self) -> None:
        """Unbind everything (the dock closes)."""
        self.bind({}, [])

    def help_text(self, napari_help: str) -> str:
        """Our keys first, then napari's hints for the keys we left alone."""
        if not self._shortcuts:
            return napari_help
        ours = ", ".join(f"<{key}> {name}" for key, name in self._shortcuts.items())
        taken = re.compile("|".join(re.escape(f"<{key}>") for key in self._shortcuts))
        rest = [part for part in napari_help.split(", ") if part and not taken.search(part)]
        return ", ".join([f"label the selection with {ours}", *rest])

    def _press(self, key: str, name: str) -> Callable[..., None]:
        def label_with(_viewer_or_layer: Any = None) -> None:
            done = self._on_key(name)
            if done:
                self.viewer.status = f"<{key}> {name}: {done}"

        return label_with

    def _entry(self, layer: Any) -> list | None:
        return next((entry for entry in self._napari_help if entry[0] == layer), None)

    def _apply_help(self, layer: Any) -> None:
        entry = self._entry(layer)
        layer.help = self.help_text(entry[1] if entry else layer.help)
        if self.viewer.layers.selection.active == layer:
            self.viewer.help = layer.help

    def _on_mode(self, event: Any) -> None:
        entry = self._entry(event.source)
        if entry is not None and _among(entry[0], self._layers):
            entry[1] = entry[0].help  # napari just rewrote it for the new mode
            self._apply_help(entry[0])

    def _give_back(self, layer: Any) -> None:
        layer.events.mode.disconnect(self._on_mode)
        entry = self._entry(layer)
        if entry is not None:
            self._napari_help.remove(entry)
            layer.help = entry[1]
        if self.viewer.layers.selection.active == layer:
            self.viewer.help = layer.help


def _among(layer: Any, layers: list[Any]) -> bool:
    """``==``, not ``is``: a dock's viewer hands out napari's proxies of the same layers."""
    return any(layer == other for other in layers)
