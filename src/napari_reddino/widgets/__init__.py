"""napari docks (Qt only here): each one a thin file over the GUI-free core.

The manifest (``napari.yaml``) names each dock class by module, so importing this
package stays cheap and pulls in no dock until napari asks for it.

Helpers the docks share live here: :func:`real_viewer` and :func:`fill_with_scrolling`; the
docks that can import torch (embedding; segmentation with cellpose) call
``keep_triton_away_from_mesa_llvm`` (``napari_reddino._triton_guard``) right before, and
``backbones`` calls it before importing timm. Importing this package has no side effect.
"""

from __future__ import annotations

from typing import Any

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm


def real_viewer(viewer: Any) -> Any:
    """The viewer behind napari's ``PublicOnlyProxy``, which napari hands to plugin docks.

    Every attribute access through the proxy returns a *new* proxy, so a layer seen twice is
    not the same object, and each dock would get a viewer of its own identity: the explorer
    and labeling docks could not share one session (selection, pooled cells). The docks keep
    to napari's public API; they unwrap only to keep object identity.
    """
    return getattr(viewer, "__wrapped__", viewer)


def fill_with_scrolling(dock: Any, content: Any, min_width: int) -> None:
    """Lay ``content`` into ``dock`` inside a scroll area: tall docks stay usable on a laptop."""
    from qtpy.QtWidgets import QScrollArea, QVBoxLayout

    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(content)
    outer = QVBoxLayout(dock)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    dock.setMinimumWidth(min_width)


__all__ = ["fill_with_scrolling", "keep_triton_away_from_mesa_llvm", "real_viewer"]
