"""napari docks (Qt only here): each one a thin file over the GUI-free core.

The manifest (``napari.yaml``) names each dock class by module, so importing this
package stays cheap and pulls in no dock until napari asks for it.

Helpers the docks share live here (:func:`fill_with_scrolling`). Importing this package
runs the one Triton guard of the plugin (``napari_reddino._triton_guard``): every dock module
imports it, napari imports a dock only once its canvas (Mesa's LLVM, where that is the driver)
is up, and before the dock can import torch (embedding; segmentation with cellpose).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm

keep_triton_away_from_mesa_llvm()


MIN_DOCK_HEIGHT = 300  # px of a dock's body: two docks stacked fit a 1024-px-high screen


@cache
def _scroll_area_class() -> type:
    """A scroll area as narrow as its content's narrowest layout, never narrower, and
    never under MIN_DOCK_HEIGHT: two docks stacked in one area both stay usable, neither
    squeezed to its header nor clipped sideways (the content may grow after it is built)."""
    from qtpy.QtCore import QEvent, QSize, Qt
    from qtpy.QtWidgets import QScrollArea

    class DockScroll(QScrollArea):
        def __init__(self, min_width: int) -> None:
            super().__init__()
            self.min_width = min_width
            self.setWidgetResizable(True)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        def minimumSizeHint(self) -> QSize:
            hint, content = super().minimumSizeHint(), self.widget()
            width = (content.minimumSizeHint().width() if content is not None else 0) + (
                self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth())
            return QSize(max(hint.width(), width, self.min_width),
                         max(hint.height(), MIN_DOCK_HEIGHT))

        def eventFilter(self, watched, event) -> bool:
            if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
                self.updateGeometry()  # the content changed: the dock re-reads our minimum
            return super().eventFilter(watched, event)

    return DockScroll


def fill_with_scrolling(dock: Any, content: Any, min_width: int) -> None:
    """Lay ``content`` into ``dock`` inside a scroll area: tall docks stay usable on a laptop."""
    from qtpy.QtWidgets import QVBoxLayout

    scroll = _scroll_area_class()(min_width)  # a fixed minimum width would override its hint
    scroll.setWidget(content)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)


__all__ = ["fill_with_scrolling"]
