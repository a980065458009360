"""Classical RBC segmentation vs a plain threshold-and-label baseline on synthetic smears.

Prints, per smear size: wall and CPU time (CPU time is the stable one on a shared machine; the
steps are single-threaded), peak traced memory (numpy buffers, via tracemalloc), cells per CPU s
and F1 at IoU 0.5 against the generator's truth (RBCs not cut by the border; white cells and
platelets ignored), for ``segment.dispatch.classical_segment`` and for the baseline
(skimage Otsu on gray + fill holes + connected components, no watershed), plus their ratio.

    python benchmarks/segmentation.py [--sizes 1024 4096] [--seed 0]

``--lazy 20000`` adds the large-smear line instead: a lazy (dask) smear of that side, tiled from one
2048² synthetic smear, segmented tile by tile (``segment.tiled``) against the in-memory path on
the same pixels when they fit (side <= 4096), else against its extrapolated peak.
"""

from __future__ import annotations

import argparse
import resource
import time
import tracemalloc

import numpy as np
from scipy import ndimage
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu
from skimage.measure import label
from skimage.morphology import remove_small_objects
from skimage.segmentation import clear_border

from napari_reddino.segment.dispatch import classical_segment
from napari_reddino.segment.metrics import instance_score
from napari_reddino.synthetic.smear import RBC_CLASSES, synthetic_smear


def baseline_segment(image: np.ndarray) -> np.ndarray:
    """What one writes first: Otsu on gray, fill holes, label components, drop specks."""
    gray = rgb2gray(image)
    mask = ndimage.binary_fill_holes(gray < threshold_otsu(gray))
    mask = remove_small_objects(mask, max_size=100)
    return clear_border(label(mask)).astype(np.int32)


def ignored_truth(smear) -> set[int]:
    labels = smear.labels
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    cells = smear.cells
    return set(cells["label"][~cells["class"].isin(RBC_CLASSES) | cells["label"].isin(edge)])


def measure(method, smear) -> dict:
    tracemalloc.start()
    start, cpu_start = time.perf_counter(), time.process_time()
    labels = method(smear.image)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    score = instance_score(smear.labels, labels, ignore_truth=ignored_truth(smear))
    cells = int(labels.max())
    return {"wall s": seconds, "cpu s": cpu, "peak MiB": peak / 2**20, "cells": cells,
            "cells/s": cells / cpu, "F1": score.f1, "precision": score.precision,
            "recall": score.recall}


def lazy_line(side: int, seed: int) -> None:
    """Peak memory and time of a lazy ``side``² smear vs the whole-image path (issue 16)."""
    import dask.array as da

    from napari_reddino.segment.dispatch import segment

    block = synthetic_smear((2048, 2048), seed=seed).image
    reps = -(-side // 2048)
    lazy = da.tile(da.from_array(block, chunks=(1024, 1024, 3)), (reps, reps, 1))[:side, :side]
    rows = []
    for name, image in (("tiled lazy", lazy), ("whole numpy", None)):
        if image is None and side > 4096:
            per_pixel = whole_bytes_per_pixel(seed)
            rows.append((name, per_pixel * side * side / 2**20, float("nan"), 0, "extrapolated"))
            continue
        pixels = image if image is not None else np.asarray(lazy)
        tracemalloc.start()
        start = time.perf_counter()
        cells = len(segment(pixels).features)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        rows.append((name, peak, seconds, cells, "measured"))
    print(f"lazy {side}x{side} smear (dask, 1024² chunks), classical segmentation")
    print(f"{'path':>12} {'peak MiB':>10} {'wall s':>8} {'cells':>7} {'':>12}")
    for name, peak, seconds, cells, how in rows:
        print(f"{name:>12} {peak:>10.0f} {seconds:>8.1f} {cells:>7} {how:>12}")
    print(f"ratio whole/tiled peak: {rows[1][1] / rows[0][1]:.1f}")


def whole_bytes_per_pixel(seed: int) -> float:
    """Traced peak bytes per pixel of the whole-image path, measured on a 2048² smear."""
    image = synthetic_smear((2048, 2048), seed=seed).image
    tracemalloc.start()
    classical_segment(image)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / image.shape[0] / image.shape[1]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lazy", type=int, default=0, metavar="SIDE",
                        help="benchmark a lazy SIDE x SIDE smear tile by tile (e.g. 20000)")
    args = parser.parse_args(argv)
    if args.lazy:
        lazy_line(args.lazy, args.seed)
        return
    rows = []
    for size in args.sizes:
        smear = synthetic_smear((size, size), seed=args.seed)
        ours = measure(classical_segment, smear)
        base = measure(baseline_segment, smear)
        rows.append((size, ours, base))
    header = (f"{'size':>6} {'metric':>10} {'classical':>10} {'baseline':>10} "
              f"{'ratio':>7}")
    print("classical = napari_reddino.segment.dispatch.classical_segment; "
          "baseline = Otsu + fill holes + label (no watershed)")
    print(header)
    print("-" * len(header))
    for size, ours, base in rows:
        for key in ("wall s", "cpu s", "peak MiB", "cells", "cells/s", "F1", "precision",
                    "recall"):
            ratio = ours[key] / base[key] if base[key] else float("nan")
            print(f"{size:>6} {key:>10} {ours[key]:>10.3f} {base[key]:>10.3f} {ratio:>7.2f}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process peak RSS (generation included): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
