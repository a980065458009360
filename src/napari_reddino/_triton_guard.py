"""A process-level guard: Triton's LLVM must not load into a process that holds Mesa's.

The plugin runs it once, when napari first imports a dock (``napari_reddino.widgets``): the
canvas is up by then and no dock has imported torch yet. Core modules import with no side
effect; a script that opens a napari viewer and then embeds without any dock calls
:func:`keep_triton_away_from_mesa_llvm` itself, after the viewer and before the embedding.
"""

from __future__ import annotations

import sys
from pathlib import Path


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
