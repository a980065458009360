"""Explorer benchmarks: UMAP of cell embeddings, and select -> highlight latency.

1. UMAP time and trustworthiness for N cells: ``project.project`` (the dock's path) vs
   umap-learn called as a user would, ``umap.UMAP().fit_transform(X)``.
2. Select-to-highlight latency with 250k cells in the viewer: a rectangle selection in
   the scatter until the cells are highlighted in the Labels layer (colour-dict swap on
   an overlay sharing the data) vs the naive way (``np.isin`` mask of the label image
   pushed into a layer).

Run (needs a display for part 2): ``xvfb-run -a python benchmarks/explorer.py``
Options: ``--sizes 10000 100000``, ``--cells 250000``, ``--skip-umap``, ``--skip-highlight``.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def cell_like_embeddings(n: int, dim: int = 384, n_types: int = 12, seed: int = 0):
    """Gaussian blobs (cell types) with a per-"subject" shift: the shape of RedDino features."""
    from sklearn.datasets import make_blobs

    x, _ = make_blobs(
        n_samples=n, n_features=dim, centers=n_types, cluster_std=4.0, random_state=seed
    )
    subjects = np.random.default_rng(seed).integers(0, 4, n)
    x += subjects[:, None] * 0.8
    return x.astype(np.float32)


UMAP_HEADER = (
    f"{'cells':>8} {'project s':>10} {'umap-learn s':>13} {'speed-up':>9} "
    f"{'cached s':>9} {'trust ours':>11} {'trust umap':>11}"
)


def bench_umap(sizes) -> list[tuple]:
    """Times and trustworthiness per size; prints each row as soon as it is measured."""
    import umap

    from napari_reddino import project

    # numba compiles each UMAP code path once per process (NN-descent, used above 4096 cells,
    # cannot be cached on disk): warm both before timing, the seeded single-thread path
    # project() uses and the parallel one of a plain umap.UMAP(), and report that one-time cost
    warm = cell_like_embeddings(5000, dim=64, seed=1)
    start = time.perf_counter()
    project.project(warm, "umap", quality=False, cache_dir=tempfile.mkdtemp())
    cold_ours = time.perf_counter() - start
    start = time.perf_counter()
    umap.UMAP().fit_transform(warm)
    cold_theirs = time.perf_counter() - start
    print(f"\none-time numba compile + a 5000-cell map: project {cold_ours:.1f} s, "
          f"umap-learn {cold_theirs:.1f} s (not timed below)")
    print("\nUMAP of cell embeddings (384-d)")
    print(UMAP_HEADER, flush=True)
    rows = []
    for n in sizes:
        x = cell_like_embeddings(n)
        project.clear_cache()
        with tempfile.TemporaryDirectory() as cache:
            start = time.perf_counter()
            ours = project.project(x, "umap", cache_dir=cache)
            t_ours = time.perf_counter() - start
            start = time.perf_counter()
            project.project(x, "umap", cache_dir=cache)
            t_cached = time.perf_counter() - start
        start = time.perf_counter()
        theirs = umap.UMAP().fit_transform(x)
        t_theirs = time.perf_counter() - start
        tw_ours, tw_theirs = project.trustworthiness(x, ours), project.trustworthiness(x, theirs)
        rows.append((n, t_ours, t_theirs, t_cached, tw_ours, tw_theirs))
        print(
            f"{n:>8} {t_ours:>10.1f} {t_theirs:>13.1f} {t_theirs / t_ours:>8.2f}x "
            f"{t_cached:>9.3f} {tw_ours:>11.3f} {tw_theirs:>11.3f}",
            flush=True,
        )
    return rows


def grid_labels(n_cells: int, cell_px: int = 8) -> np.ndarray:
    """A label image with ``n_cells`` square cells (1 px gaps): 250k cells ~ 4000 x 4000 px."""
    side = int(np.ceil(np.sqrt(n_cells)))
    ids = np.arange(1, side * side + 1, dtype=np.int32).reshape(side, side)
    ids[ids > n_cells] = 0
    block = np.ones((cell_px, cell_px), dtype=np.int32)
    block[-1, :] = block[:, -1] = 0
    return np.kron(ids, block)


def bench_highlight(n_cells: int, repeats: int = 5) -> list[tuple]:
    import napari
    import pandas as pd
    from qtpy.QtWidgets import QApplication

    from napari_reddino.widgets.explorer import ExplorerWidget

    labels = grid_labels(n_cells)
    side, cell_px = int(np.ceil(np.sqrt(n_cells))), 8
    row, col = np.divmod(np.arange(n_cells), side)
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(n_cells, 2)).astype(np.float32)
    features = pd.DataFrame(
        {
            "label": np.arange(1, n_cells + 1),
            "index": np.arange(1, n_cells + 1),
            "image": "grid",
            "subject": rng.choice(["a", "b", "c"], n_cells),
            "embedding_row": np.arange(n_cells),
            "umap_0": coords[:, 0],
            "umap_1": coords[:, 1],
            # the geometry segmentation writes: cell i fills a 7 x 7 block of its 8 x 8 tile
            "centroid_y": row * cell_px + 3.0,
            "centroid_x": col * cell_px + 3.0,
            "area": float((cell_px - 1) ** 2),
        }
    )
    viewer = napari.Viewer(show=True)
    layer = viewer.add_labels(
        labels,
        name="grid labels",
        features=features,
        metadata={"image": "grid", "reddino_embeddings": rng.normal(size=(n_cells, 4))},
    )
    widget = ExplorerWidget(viewer)
    viewer.window.add_dock_widget(widget)
    app = QApplication.instance()
    app.processEvents()
    rows = []
    for fraction in (0.0001, 0.01, 0.1):
        half = np.sqrt(fraction * 2 * np.pi) / 2  # box holding ~fraction of N(0, 1) points
        ours, ours_drawn, naive, naive_drawn = [], [], [], []
        for r in range(repeats):
            shift = 0.01 * r
            start = time.perf_counter()
            widget.scatter.select_rectangle((-half + shift, -half), (half + shift, half))
            ours.append(time.perf_counter() - start)
            app.processEvents()  # draw: software GL under Xvfb, ms on a GPU
            ours_drawn.append(time.perf_counter() - start)
            selected = features["label"].to_numpy()[widget.session.selection]
            start = time.perf_counter()
            mask = np.isin(layer.data, selected)  # naive: touch every pixel
            if r == 0 and fraction == 0.0001:
                naive_layer = viewer.add_image(mask, name="naive mask", opacity=0.5)
            else:
                naive_layer.data = mask
            naive.append(time.perf_counter() - start)
            app.processEvents()
            naive_drawn.append(time.perf_counter() - start)
        rows.append(
            (
                len(widget.session.selection),
                *(np.median(t) * 1e3 for t in (ours, naive, ours_drawn, naive_drawn)),
            )
        )
    viewer.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--cells", type=int, default=250_000)
    parser.add_argument("--skip-umap", action="store_true")
    parser.add_argument("--skip-highlight", action="store_true")
    args = parser.parse_args()
    if not args.skip_umap:
        bench_umap(args.sizes)
    if not args.skip_highlight:
        rows = bench_highlight(args.cells)
        print(f"\nSelect -> highlight latency, {args.cells} cells in one Labels layer (median)")
        print(
            f"{'selected':>9} {'ours ms':>9} {'naive isin ms':>14} {'ratio':>7} "
            f"{'ours+draw ms':>13} {'naive+draw ms':>14}"
        )
        for n, ours, naive, ours_drawn, naive_drawn in rows:
            print(
                f"{n:>9} {ours:>9.1f} {naive:>14.1f} {naive / ours:>6.1f}x "
                f"{ours_drawn:>13.1f} {naive_drawn:>14.1f}"
            )
        print("(draw = one Qt event loop pass; Xvfb renders with software OpenGL)")


if __name__ == "__main__":
    main()
