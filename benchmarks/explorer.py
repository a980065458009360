"""Explorer benchmarks: first map of a session, UMAP at scale, select -> highlight latency.

1. First map of ``--first`` cells in FRESH processes, imports and every compile included:
   once with an empty numba cache (the first process after installing) and once more with the
   cache that run left on disk (every later session).
2. UMAP time and trustworthiness for N cells: ``projection.project`` (the dock's path; numba's
   one-time NN-descent compile above 20k cells warmed first, and reported) vs umap-learn called
   as a user would, ``umap.UMAP().fit_transform(X)`` (warmed too). Trustworthiness on a random
   5000 cells (scikit-learn, 10 neighbors). cuML's GPU UMAP beside them when it is installed
   and a CUDA device is present (on a lent GPU: ``pip install cuml-cu12``, then
   ``python benchmarks/explorer.py --skip-first --skip-highlight``).
3. Select -> highlight latency with 250k cells in the viewer: a rectangle selection in the
   scatter until the cells are ringed in the image, vs the naive way (``np.isin`` mask of the
   label image pushed into a layer); "+draw" forces both canvases to render (software OpenGL
   under Xvfb). Hover and lasso with the scatter's draw, and the scatter's draw with vispy's
   ``Markers`` (the earlier implementation) beside the dots visual used now.

Run (needs a display for part 3): ``xvfb-run -a python benchmarks/explorer.py``
Options: ``--first 10000``, ``--sizes 100000 250000``, ``--baseline-max 100000`` (umap-learn
only up to this size), ``--cells 250000``, ``--skip-first``, ``--skip-umap``,
``--skip-highlight``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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


FIRST_MAP = """
import sys, time
start = time.perf_counter()
sys.path.insert(0, {bench!r})
from explorer import cell_like_embeddings
x = cell_like_embeddings({n})
start, cpu = time.perf_counter(), time.process_time()
if {baseline!r}:
    import umap
    coords = umap.UMAP().fit_transform(x)
else:
    from napari_reddino.explore import projection
    coords = projection.project(x, "umap")
seconds = time.perf_counter() - start
from napari_reddino.explore import projection
print(seconds, time.process_time() - cpu, projection.trustworthiness(x, coords))
"""


def bench_first_map(n: int) -> list[tuple]:
    """Seconds (wall, and CPU of all threads: what a busy machine inflates less) and
    trustworthiness of the first map in fresh processes (cold, then warm numba cache), ours
    and umap-learn's (``umap.UMAP().fit_transform``) side by side."""
    rows = []
    for who, baseline in (("project", False), ("umap-learn", True)):
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "NUMBA_CACHE_DIR": cache}
            code = FIRST_MAP.format(bench=str(Path(__file__).parent), n=n, baseline=baseline)
            for label in ("empty numba cache (first process after install)",
                          "numba cache on disk (every later session)"):
                out = subprocess.run([sys.executable, "-c", code], env=env,
                                     capture_output=True, text=True, check=True).stdout.split()
                rows.append((f"{who:<11}{label}", float(out[-3]), float(out[-2]),
                             float(out[-1])))
    return rows


UMAP_HEADER = (
    f"{'cells':>8} {'project s':>10} {'umap-learn s':>13} {'ratio':>7} {'ours cpu s':>11} "
    f"{'umap cpu s':>11} {'cached s':>9} {'trust ours':>11} {'trust umap':>11}"
)


def bench_umap(sizes, baseline_max: int) -> list[tuple]:
    """Times and trustworthiness per size; prints each row as soon as it is measured."""
    import umap

    from napari_reddino.explore import neighbors, projection

    # numba compiles NN-descent once per process (used above neighbors.EXACT_MAX cells by
    # project(), always by umap-learn): warm both before timing and report that one-time cost
    warm = cell_like_embeddings(neighbors.EXACT_MAX + 1000, dim=16, seed=1)
    start = time.perf_counter()
    projection.project(warm, "umap", n_epochs=5)
    cold_ours = time.perf_counter() - start
    start = time.perf_counter()
    umap.UMAP(n_epochs=5).fit_transform(warm[:5000])
    cold_theirs = time.perf_counter() - start
    print(f"\none-time warm-up in this process (NN-descent compile + a tiny map): project "
          f"{cold_ours:.1f} s, umap-learn {cold_theirs:.1f} s (not timed below)")
    print("\nUMAP of cell embeddings (384-d), every cell in one fit")
    print(UMAP_HEADER, flush=True)
    rows = []
    for n in sizes:
        x = cell_like_embeddings(n)
        projection.clear_cache()
        with tempfile.TemporaryDirectory() as cache:
            start, cpu = time.perf_counter(), time.process_time()
            ours = projection.project(x, "umap", cache_dir=cache)
            t_ours, c_ours = time.perf_counter() - start, time.process_time() - cpu
            start = time.perf_counter()
            projection.project(x, "umap", cache_dir=cache)
            t_cached = time.perf_counter() - start
        tw_ours = projection.trustworthiness(x, ours)
        t_theirs = tw_theirs = c_theirs = float("nan")
        if n <= baseline_max:
            start, cpu = time.perf_counter(), time.process_time()
            theirs = umap.UMAP().fit_transform(x)
            t_theirs, c_theirs = time.perf_counter() - start, time.process_time() - cpu
            tw_theirs = projection.trustworthiness(x, theirs)
        rows.append((n, t_ours, t_theirs, c_ours, c_theirs, t_cached, tw_ours, tw_theirs))
        print(
            f"{n:>8} {t_ours:>10.1f} {t_theirs:>13.1f} {t_ours / t_theirs:>6.2f}x "
            f"{c_ours:>11.1f} {c_theirs:>11.1f} {t_cached:>9.3f} {tw_ours:>11.3f} "
            f"{tw_theirs:>11.3f}",
            flush=True,
        )
    return rows


def bench_cuml(sizes) -> list[tuple]:
    """cuML's GPU UMAP on the same cells, when it is installed and a CUDA device is present
    (a lent GPU machine); otherwise one line saying why it was not measured."""
    try:
        import cupy
        from cuml.manifold import UMAP as CumlUMAP
        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("no CUDA device")
    except Exception as err:  # ImportError, or CUDA runtime errors on a CPU-only machine
        print(f"\ncuML UMAP: not measured ({type(err).__name__}: {err})")
        return []
    from napari_reddino.explore import projection

    print("\ncuML UMAP (GPU), default parameters, every cell in one fit")
    rows = []
    for n in sizes:
        x = cell_like_embeddings(n)
        CumlUMAP(n_epochs=5).fit_transform(x[:2000])  # CUDA context and kernels, not timed
        start = time.perf_counter()
        coords = np.asarray(CumlUMAP().fit_transform(x))
        seconds = time.perf_counter() - start
        rows.append((n, seconds, projection.trustworthiness(x, coords)))
        print(f"{n:>8} {seconds:>10.1f} s  trustworthiness {rows[-1][2]:.3f}", flush=True)
    return rows


def grid_labels(n_cells: int, cell_px: int = 8) -> np.ndarray:
    """A label image with ``n_cells`` square cells (1 px gaps): 250k cells ~ 4000 x 4000 px."""
    side = int(np.ceil(np.sqrt(n_cells)))
    ids = np.arange(1, side * side + 1, dtype=np.int32).reshape(side, side)
    ids[ids > n_cells] = 0
    block = np.ones((cell_px, cell_px), dtype=np.int32)
    block[-1, :] = block[:, -1] = 0
    return np.kron(ids, block)


def bench_highlight(n_cells: int, repeats: int = 5) -> tuple[list[tuple], dict]:
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
    scatter = widget.scatter

    def draw() -> None:
        """Both canvases rendered now (not just scheduled): the scatter and napari's."""
        app.processEvents()
        scatter.canvas.render()
        viewer.screenshot(canvas_only=True, flash=False)

    rows = []
    for fraction in (0.0001, 0.01, 0.1):
        half = np.sqrt(fraction * 2 * np.pi) / 2  # box holding ~fraction of N(0, 1) points
        ours, ours_drawn, naive, naive_drawn = [], [], [], []
        for r in range(repeats):
            shift = 0.01 * r
            start = time.perf_counter()
            scatter.select_rectangle((-half + shift, -half), (half + shift, half))
            ours.append(time.perf_counter() - start)
            draw()
            ours_drawn.append(time.perf_counter() - start)
            selected = features["label"].to_numpy()[widget.session.selection]
            start = time.perf_counter()
            mask = np.isin(layer.data, selected)  # naive: touch every pixel
            if r == 0 and fraction == 0.0001:
                naive_layer = viewer.add_image(mask, name="naive mask", opacity=0.5)
            else:
                naive_layer.data = mask
            naive.append(time.perf_counter() - start)
            draw()
            naive_drawn.append(time.perf_counter() - start)
        rows.append(
            (
                len(widget.session.selection),
                *(np.median(t) * 1e3 for t in (ours, naive, ours_drawn, naive_drawn)),
            )
        )
    viewer.layers.remove(naive_layer)
    extra = _interaction_timings(scatter, coords, repeats)
    viewer.close()
    return rows, extra


def _median_ms(action, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _interaction_timings(scatter, coords: np.ndarray, repeats: int) -> dict[str, float]:
    """Hover and lasso with the scatter's draw; the scatter's draw alone, dots vs Markers."""
    from vispy import scene

    rng = np.random.default_rng(1)
    lasso = np.array([[-0.5, -0.5], [0.5, -0.4], [0.6, 0.5], [-0.4, 0.6], [-0.7, 0.0]])
    timings = {
        "hover (nearest point + ring) + scatter draw": _median_ms(
            lambda: (scatter.set_hovered(scatter.point_at(rng.normal(size=2), 0.05)),
                     scatter.canvas.render()), repeats),
        "lasso (~20% of cells) + scatter draw": _median_ms(
            lambda: (scatter.select_polygon(lasso), scatter.canvas.render()), repeats),
        "scatter draw, dots visual (now)": _median_ms(scatter.canvas.render, repeats),
    }
    scatter.markers.visible = False
    before = scene.visuals.Markers(parent=scatter.view.scene)
    before.set_data(coords, face_color=scatter.colors, size=scatter.point_size, edge_width=0)
    timings["scatter draw, vispy Markers (before)"] = _median_ms(scatter.canvas.render, repeats)
    before.parent = None
    scatter.markers.visible = True
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--first", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 250_000])
    parser.add_argument("--baseline-max", type=int, default=100_000)
    parser.add_argument("--cells", type=int, default=250_000)
    parser.add_argument("--skip-first", action="store_true")
    parser.add_argument("--skip-umap", action="store_true")
    parser.add_argument("--skip-highlight", action="store_true")
    args = parser.parse_args()
    if not args.skip_first:
        print(f"\nFirst map of {args.first} cells in a fresh process (imports + compiles)")
        for label, seconds, cpu, trust in bench_first_map(args.first):
            print(f"  {label:<61} {seconds:6.1f} s wall {cpu:6.1f} s cpu  trustworthiness "
                  f"{trust:.3f}", flush=True)
    if not args.skip_umap:
        bench_umap(args.sizes, args.baseline_max)
        bench_cuml(args.sizes)
    if not args.skip_highlight:
        rows, extra = bench_highlight(args.cells)
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
        print("(draw = Qt events + both canvases rendered; Xvfb renders with software OpenGL)")
        for label, ms in extra.items():
            print(f"  {label:<48} {ms:8.1f} ms")


if __name__ == "__main__":
    main()
