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
    if not _mesa_llvm_loaded():
        # a script may import the docks before it opens a viewer: decide when Triton is imported
        if not any(isinstance(f, _LateTritonGuard) for f in sys.meta_path):
            sys.meta_path.insert(0, _LateTritonGuard())
        return False
    sys.modules["triton"] = None  # type: ignore[assignment]
    return True


def _mesa_llvm_loaded() -> bool:
    try:
        return "libLLVM" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux: no Mesa libLLVM clash known there
        return False


class _LateTritonGuard:
    """A meta-path finder that refuses ``import triton`` if Mesa's LLVM got loaded meanwhile
    (the viewer opened after the docks were imported); otherwise it lets the import happen."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "triton" and _mesa_llvm_loaded():
            sys.modules["triton"] = None  # type: ignore[assignment]
            raise ModuleNotFoundError("triton is kept out of a process holding Mesa's LLVM "
                                      "(napari_reddino._triton_guard)", name="triton")
        return None
