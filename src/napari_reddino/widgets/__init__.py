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
    from qtpy.QtCore import QEvent, QSize, Qt, QTimer
    from qtpy.QtWidgets import QScrollArea

    class DockScroll(QScrollArea):
        def __init__(self, min_width: int, min_height: int = MIN_DOCK_HEIGHT) -> None:
            super().__init__()
            self.min_width, self.min_height = min_width, min_height
            self.setWidgetResizable(True)
            self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        def minimumSizeHint(self) -> QSize:
            hint, content = super().minimumSizeHint(), self.widget()
            width = (content.minimumSizeHint().width() if content is not None else 0) + (
                self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth())
            return QSize(max(hint.width(), width, self.min_width),
                         max(hint.height(), self.min_height))

        def showEvent(self, event) -> None:
            super().showEvent(event)
            QTimer.singleShot(0, lambda: tab_when_crowded(self))  # once the docks are laid out

        def eventFilter(self, watched, event) -> bool:
            if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
                self.updateGeometry()  # the content changed: the dock re-reads our minimum
            return super().eventFilter(watched, event)

    return DockScroll


PLUGIN_DOCK = "(napari-reddino)"  # napari titles a plugin's dock "<name> (<plugin>)"


def tab_when_crowded(widget: Any) -> bool:
    """Put our docks on ``widget``'s side of the window in tabs when, stacked, they need more
    height than the screen has (they would push the window past the screen's edge, and the
    explorer's plot below it). Returns True when it made tabs."""
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QDockWidget, QMainWindow

    dock = widget
    try:
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
    except RuntimeError:  # closed before the deferred call came: nothing to arrange
        return False
    main = None if dock is None else dock.parentWidget()
    if not isinstance(main, QMainWindow) or dock.isFloating() or main.screen() is None:
        return False
    room = main.screen().availableGeometry().height()
    if main.minimumSizeHint().height() <= room:
        return False
    area = main.dockWidgetArea(dock)
    ours = [other for other in main.findChildren(QDockWidget)
            if (other is dock or other.isVisible()) and not other.isFloating()
            and main.dockWidgetArea(other) == area and PLUGIN_DOCK in other.windowTitle()]
    if len(ours) < 2:
        return False
    first = ours[0]
    for other in ours[1:]:  # one stack of tabs: the tallest dock sets the height
        if other not in main.tabifiedDockWidgets(first):
            main.tabifyDockWidget(first, other)
    dock.raise_()

    def back_on_screen() -> None:  # it had grown past the screen's edge
        if main.height() > room:
            main.resize(main.width(), max(room, main.minimumSizeHint().height()))

    QTimer.singleShot(0, back_on_screen)  # once the tabs are laid out
    return True


def scrolling(content: Any, min_width: int, min_height: int = MIN_DOCK_HEIGHT) -> Any:
    """``content`` in a vertical scroll area as wide as it needs, at least ``min_height`` tall."""
    scroll = _scroll_area_class()(min_width, min_height)  # a fixed minimum width would
    scroll.setWidget(content)  # override its hint
    return scroll


def fill_with_scrolling(dock: Any, content: Any, min_width: int) -> None:
    """Lay ``content`` into ``dock`` inside a scroll area: tall docks stay usable on a laptop."""
    from qtpy.QtWidgets import QVBoxLayout

    scroll = scrolling(content, min_width)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)


__all__ = ["fill_with_scrolling", "scrolling", "tab_when_crowded"]
