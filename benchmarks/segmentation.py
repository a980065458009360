"""Classical RBC segmentation vs a plain threshold-and-label baseline on synthetic smears.

Prints, per smear size: wall and CPU time (CPU time is the stable one on a shared machine; the
steps are single-threaded), peak traced memory (numpy buffers, via tracemalloc), cells per CPU s
and F1 at IoU 0.5 against the generator's truth (RBCs not cut by the border; white cells and
platelets ignored), for ``napari_reddino.segment.classical_segment`` and for the baseline
(skimage Otsu on gray + fill holes + connected components, no watershed), plus their ratio.

    python benchmarks/segmentation.py [--sizes 1024 4096] [--seed 0]
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

from napari_reddino.segment import classical_segment
from napari_reddino.segment_metrics import instance_score
from napari_reddino.synthetic import RBC_CLASSES, synthetic_smear


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


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rows = []
    for size in args.sizes:
        smear = synthetic_smear((size, size), seed=args.seed)
        ours = measure(classical_segment, smear)
        base = measure(baseline_segment, smear)
        rows.append((size, ours, base))
    header = (f"{'size':>6} {'metric':>10} {'classical':>10} {'baseline':>10} "
              f"{'ratio':>7}")
    print("classical = napari_reddino.segment.classical_segment; baseline = Otsu + fill holes + "
          "label (no watershed)")
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
