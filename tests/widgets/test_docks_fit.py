"""#27 item 5, docks that fit: with the explorer and the labeling dock open together, at
1280 x 1024 and 1600 x 1150, the explorer's scatter plot stays on screen and big enough to use
(it was scrolled out of view at 1600 x 1150), and the labeling dock keeps its room."""

from __future__ import annotations

import pytest
from qtpy.QtCore import QRect

from ._cell_layers import add_smears

PLUGIN = "napari-reddino"
EXPLORER, LABELING = "Cell explorer (UMAP)", "Label & propagate"
MIN_PLOT_PX = 250


def _shown_rect(widget, window) -> QRect:
    """The part of ``widget`` that is drawn (clipped by its scroll areas), in window pixels."""
    shown = widget.visibleRegion().boundingRect()
    return QRect(widget.mapTo(window, shown.topLeft()), shown.size())


@pytest.mark.parametrize("size", [(1280, 1024), (1600, 1150)])
@pytest.mark.parametrize("first", [EXPLORER, LABELING])
def test_the_scatter_stays_in_view_with_two_docks_open(make_napari_viewer, qtbot, size, first):
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window  # the test sizes the window as a user would
    window.resize(*size)
    add_smears(viewer)
    second = LABELING if first == EXPLORER else EXPLORER
    docks = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in (first, second)}
    qtbot.wait(300)
    explorer, labeling = docks[EXPLORER][1], docks[LABELING][1]
    assert window.width() <= size[0] and window.height() <= size[1]  # no dock grew the window

    plot = explorer.scatter.native
    if not plot.isVisible():  # tabbed: the user brings the explorer's tab forward
        docks[EXPLORER][0].raise_()
        qtbot.wait(100)
    assert plot.isVisible()
    shown = _shown_rect(plot, window)
    assert shown.height() >= MIN_PLOT_PX and shown.width() >= MIN_PLOT_PX
    assert window.rect().contains(shown)  # inside the window, not below its edge

    dock = docks[LABELING][0]
    if dock.visibleRegion().isEmpty():  # tabbed behind the explorer
        dock.raise_()
        qtbot.wait(100)
    assert _shown_rect(labeling, window).height() >= 300


def test_docks_that_do_not_fit_the_screen_go_in_tabs(make_napari_viewer, qtbot):
    """Every dock of the plugin open on one side: stacked they need more height than the
    screen has, so they share it in tabs and the window stays on the screen."""
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    room = window.screen().availableGeometry()
    if room.height() >= 2000:
        pytest.skip("a screen this tall holds every dock stacked (the suite's Xvfb: 1024 px)")
    window.resize(min(1280, room.width()), room.height())
    add_smears(viewer)
    names = ["Segment cells", "Embed smear (RedDino)", EXPLORER, LABELING]
    docks = {name: viewer.window.add_plugin_dock_widget(PLUGIN, name) for name in names}
    dock, explorer = docks[EXPLORER]
    # the docks show, stacked they push the window past the screen's bottom edge, then tabs
    qtbot.waitUntil(lambda: len(window.tabifiedDockWidgets(dock)) == len(names) - 1,
                    timeout=20_000)
    qtbot.waitUntil(lambda: window.height() <= room.height(), timeout=20_000)
    dock.raise_()  # the user picks the explorer's tab
    qtbot.wait(100)
    shown = _shown_rect(explorer.scatter.native, window)
    assert shown.height() >= MIN_PLOT_PX
    assert window.rect().contains(shown)
