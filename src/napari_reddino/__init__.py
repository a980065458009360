"""napari-reddino: explore red-blood-cell smears through a RedDino foundation model.

The public API, scanpy style and imported lazily (``import napari_reddino`` loads no torch, Qt,
napari or matplotlib)::

    import napari_reddino as rd
    adata = rd.read_run("out/run")              # cells.h5ad / cells.parquet + embeddings.npz
    rd.tl.project(adata, "umap")                # -> adata.obsm["X_umap"]
    rd.tl.cluster(adata, n_clusters=8)          # -> adata.obs["cluster"]
    rd.tl.propagate(adata)                      # -> adata.obs["class", "class_source", ...]
    rd.tl.batch_metrics(adata)                  # -> adata.uns["batch_metrics"]
    rd.write_run(adata, "out/run")

``rd.tl`` also has ``segment``, ``embed`` and ``morphology`` (see :mod:`napari_reddino.tl`).
Column and key names are in :mod:`napari_reddino.names`.
"""

from __future__ import annotations

from importlib import import_module

__version__ = "0.1.0"

_LAZY = {"tl": ("napari_reddino.tl", None), "names": ("napari_reddino.names", None),
         "read_run": ("napari_reddino.runs.anndata_io", "read_run"),
         "write_run": ("napari_reddino.runs.anndata_io", "write_run")}

__all__ = ["__version__", "names", "read_run", "tl", "write_run"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'napari_reddino' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = import_module(module_name)
    return module if attr is None else getattr(module, attr)


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
