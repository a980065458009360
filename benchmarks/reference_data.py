"""Whole-smear cell tables of Chula RBC-12 with the labeled class of each matched cell (cached).

Why: a reference model is applied to the cell table a run writes, so it is trained on the same
table: every segmented object of a smear (classical backend, ``kind``, border flags, the 56
``morph_*`` columns, ``counted``), not only the labeled ones, so that per-smear statistics are
those annotate sees. Each labeled center is matched to the object whose mask holds it; the
object's ``true_class`` is that label (empty elsewhere). Cached per smear under /tmp, keyed by
the segmentation + morphology sources (``real_cells_data.code_version``); older results are
reused, as real_cells_data does, while the segmentation moves.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_cells_data import DATA, code_version

CACHE = Path("/tmp/reddino_reference")
TRUE_CLASS = "true_class"


def smear_table(image_name: str, cells: pd.DataFrame) -> pd.DataFrame:
    """One smear's full cell table with ``true_class`` of the matched objects (cached)."""
    path = CACHE / f"seg_{code_version()}" / f"{Path(image_name).stem}.parquet"
    older = sorted(CACHE.glob(f"seg_*/{Path(image_name).stem}.parquet"),
                   key=lambda p: p.stat().st_mtime)
    if path.is_file() or older:
        return pd.read_parquet(path if path.is_file() else older[-1])
    from napari_reddino.morphology.features import add_morphology
    from napari_reddino.runs.pipeline import read_image
    from napari_reddino.segment.counted import add_counted
    from napari_reddino.segment.dispatch import segment

    image = read_image(DATA / "images" / image_name)
    seg = segment(image, method="classical", image_name=image_name, subject=image_name)
    labels = np.asarray(seg.labels)
    table = add_counted(add_morphology(seg.features, labels, image))
    ys = np.clip(cells["y"].to_numpy(int), 0, labels.shape[0] - 1)
    xs = np.clip(cells["x"].to_numpy(int), 0, labels.shape[1] - 1)
    matched = labels[ys, xs]
    truth = {}
    for label, name in zip(matched, cells["class_name"]):
        if label > 0:  # two centers in one object: the object is ambiguous, drop its label
            truth[int(label)] = None if int(label) in truth else str(name)
    table[TRUE_CLASS] = [truth.get(int(lab)) for lab in table["label"]]
    table["n_labeled_centers"] = len(cells)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(path)
    return table


def load_tables(limit: int | None = None, log=print) -> pd.DataFrame:
    """All smears' tables concatenated (``image`` = the smear's file name)."""
    labels = pd.read_csv(DATA / "labels.csv")
    images = sorted(labels["image"].unique())[:limit]
    parts, start = [], time.perf_counter()
    for i, name in enumerate(images):
        parts.append(smear_table(name, labels[labels["image"] == name].reset_index(drop=True)))
        if i % 25 == 0:
            log(f"  {i + 1}/{len(images)} smears ({time.perf_counter() - start:.0f} s)")
    return pd.concat(parts, ignore_index=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    table = load_tables(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    known = table[TRUE_CLASS].notna()
    print(f"{len(table)} objects, {int(known.sum())} matched to a label, "
          f"{int((known & table['counted']).sum())} of them counted")
