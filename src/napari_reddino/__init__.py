"""napari-reddino: explore red-blood-cell smears through a RedDino foundation model."""

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm

__version__ = "0.1.0"

# Any submodule import passes here first: a viewer opened before torch/timm are imported (a
# script, a notebook, napari itself) must not get Triton's LLVM next to Mesa's (see there).
keep_triton_away_from_mesa_llvm()
