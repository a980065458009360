"""napari docks (Qt only here): each one a thin file over the GUI-free core.

The manifest (``napari.yaml``) names each dock class by module, so importing this
package stays cheap and pulls in no dock until napari asks for it.

Helpers the docks share live here: :func:`real_viewer`, :func:`fill_with_scrolling` and the
process-level guard :func:`keep_triton_away_from_mesa_llvm`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


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


def keep_triton_away_from_mesa_llvm() -> bool:
    """Stop ``import triton`` once Mesa's LLVM is loaded; True when the block is in place.

    napari's canvas on Mesa (llvmpipe, radeonsi: VMs, remote desktops, AMD GPUs) loads the
    system ``libLLVM``; Triton's ``libtriton`` carries its own LLVM, and loading it into the
    same process afterwards segfaults (torch imports Triton lazily, e.g. through
    ``torchvision.ops`` -> ``torch._dynamo``). The plugin never uses Triton (no
    ``torch.compile``), and torch runs eager CPU/CUDA code without it, so when Triton is not
    imported yet and a Mesa LLVM is mapped, ``import triton`` is made to raise ImportError.
    """
    if "triton" in sys.modules:
        return sys.modules["triton"] is None
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no Mesa libLLVM clash known there
        return False
    if "libLLVM" not in maps:
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


keep_triton_away_from_mesa_llvm()
