"""Hand corrections: seconds to bring a smear's cell table up to date after an edit.

``python benchmarks/corrections.py [IMAGE ...]`` (default: three Chula RBC-12 dev smears).
Baseline: what the table would cost without ``runs.corrections``, measuring every cell of the
smear again (region features, kinds, morphology and, with the bundled backbone, every vector).
Ours: :func:`apply_correction` after erasing half of one cell, after merging two and after
splitting one, which measures only the changed cells (the stain features still see the whole
smear's glass) and embeds only them. The table prints both and the ratio.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage as ndi

from napari_reddino import names as nm
from napari_reddino.embed.per_cell import cell_embeddings
from napari_reddino.runs.corrections import apply_correction, measure_cells, merge_cells, split_cell
from napari_reddino.runs.embed_smear import cached_backbone
from napari_reddino.segment.dispatch import segment

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chula_rbc12_dev" / "images"


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def one_smear(path: Path, backbone) -> list[tuple[str, int, float, float]]:
    image = iio.imread(path)[..., :3]
    labels = segment(image).labels
    ids = np.unique(labels)[1:]
    table, full_s = _timed(lambda: measure_cells(labels, image, ids, image_name=path.name))
    vectors, embed_s = _timed(lambda: cell_embeddings(image, labels, backbone,
                                                      pooling="cls_crop", image_name=path.name))
    table[nm.EMBEDDING_ROW] = vectors.rows_for(path.name, table[nm.LABEL])
    baseline = full_s + embed_s
    whole = table[~table[nm.TOUCHES_BORDER] & (table[nm.KIND] == "rbc")][nm.LABEL].tolist()
    a, b, c = whole[:3]
    erased = labels.copy()
    ys, _ = np.nonzero(labels == a)
    erased[(labels == a) & (np.arange(labels.shape[0])[:, None] > np.median(ys))] = 0
    merged = merge_cells(labels, [b, c])
    seeds = [np.unravel_index(np.argmax(ndi.distance_transform_edt(labels == x)), labels.shape)
             for x in (b, c)]
    rows = []
    for name, after, before in (("erase half a cell", erased, labels),
                                ("merge two cells", merged, labels),
                                ("split one cell", split_cell(merged, min(b, c), seeds), merged)):
        _, ours = _timed(lambda after=after, before=before: apply_correction(
            table, before, after, image, image_name=path.name, embeddings=vectors,
            backbone=backbone))
        rows.append((f"{path.name}: {name}", len(ids), baseline, ours))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images", nargs="*", type=Path)
    args = parser.parse_args()
    images = args.images or [DATA / f"{n}.jpg" for n in (236, 64, 198)]
    backbone = cached_backbone("reddino-tiny", "cpu")
    print(f"{'edit':<34} {'cells':>5} {'re-measure all (s)':>19} {'changed only (s)':>17} "
          f"{'ratio':>6}")
    for path in images:
        for name, n, baseline, ours in one_smear(path, backbone):
            print(f"{name:<34} {n:>5} {baseline:>19.2f} {ours:>17.2f} {baseline / ours:>5.1f}x")


if __name__ == "__main__":
    main()
