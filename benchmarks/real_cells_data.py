"""Per-smear intermediate results of benchmarks/real_cells.py, cached under /tmp.

For each Chula RBC-12 smear: segment (classical backend), match every labeled center to the
object that contains it, measure the morphology and a generic descriptor (color histogram + HOG
+ 5 shape numbers) of the matched objects, and embed them with a backbone (``cls_crop``, as the
pipeline does). Segmentation results are keyed by a hash of the segmentation and morphology
source files (older results are reused unless ``FRESH``), embeddings by backbone and cell bounding
box, so reruns only redo what changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data" / "chula_rbc12_dev"
CACHE = Path("/tmp/reddino_real_cells")
#: False: reuse a smear's newest cached result even if made by older segmentation code (the
#: segmentation moves fast while it is being improved); ``--fresh`` in real_cells.py sets True.
FRESH = False
_SOURCES = ("segment/dispatch.py", "segment/classical.py", "segment/kind.py",
            "segment/check.py", "morphology/features.py", "morphology/shape.py",
            "morphology/stain.py")


def code_version() -> str:
    """Hash of the sources that decide segmentation and morphology (the cache key)."""
    digest = hashlib.md5()
    for name in _SOURCES:
        # a moved source must fail here, not silently drop out of the key and keep stale cells
        digest.update((REPO / "src" / "napari_reddino" / name).read_bytes())
    return digest.hexdigest()[:10]


def generic_descriptor(image, labels, cell_ids, boxes):
    """Color histogram (8 bins x RGB of its pixels), HOG of a 64 px crop, 5 shape numbers."""
    from skimage.feature import hog

    from napari_reddino.embed.per_cell import crop_square
    from napari_reddino.io.cell_table import region_features

    shape = region_features(labels, image, image_name="x", subject="x").set_index("label")
    rows = []
    for cell, box in zip(cell_ids, boxes):
        pixels = image[box][labels[box] == cell]
        hist = np.concatenate([np.histogram(pixels[:, c], bins=8, range=(0, 256))[0]
                               for c in range(3)]) / max(len(pixels), 1)
        crop = crop_square(image, box, 1.5, 64).mean(axis=2)
        grad = hog(crop, orientations=9, pixels_per_cell=(16, 16), cells_per_block=(2, 2))
        s = shape.loc[cell]
        numbers = [s["area"], s["perimeter"], s["eccentricity"], s["solidity"],
                   4 * np.pi * s["area"] / max(s["perimeter"], 1e-6) ** 2]
        rows.append(np.concatenate([hist, grad, numbers]))
    return np.asarray(rows, np.float32).reshape(len(cell_ids), 24 + 324 + 5)


def prepare_smear(image_name: str, cells: pd.DataFrame, method: str = "classical"):
    """Segment + match + morphology + generic descriptor of one smear (cached)."""
    from scipy import ndimage

    from napari_reddino.morphology.features import morphology_features
    from napari_reddino.runs.pipeline import read_image
    from napari_reddino.segment.dispatch import segment

    path = CACHE / f"seg_{method}_{code_version()}" / f"{image_name}.npz"
    older = sorted(CACHE.glob(f"seg_{method}_*/{image_name}.npz"), key=lambda p: p.stat().st_mtime)
    if path.is_file() or (older and not FRESH):
        return dict(np.load(path if path.is_file() else older[-1], allow_pickle=False))
    image = read_image(DATA / "images" / image_name)
    labels = np.asarray(segment(image, method=method, image_name=image_name).labels)
    ys = np.clip(cells["y"].to_numpy(int), 0, labels.shape[0] - 1)
    xs = np.clip(cells["x"].to_numpy(int), 0, labels.shape[1] - 1)
    matched = labels[ys, xs]
    ids = np.unique(matched[matched > 0])
    objects = ndimage.find_objects(labels)
    boxes = [objects[i - 1] for i in ids]
    morph = morphology_features(labels, image).set_index("label")
    out = {
        "matched_label": matched.astype(np.int64),
        "cell_ids": ids.astype(np.int64),
        "boxes": np.array([[b[0].start, b[0].stop, b[1].start, b[1].stop] for b in boxes],
                          np.int64).reshape(-1, 4),
        "morph": morph.loc[ids].to_numpy(np.float32).reshape(len(ids), morph.shape[1]),
        "morph_names": np.array(list(morph.columns)),
        "generic": generic_descriptor(image, labels, ids, boxes),
        "n_segmented": np.int64(labels.max()),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def backbone_key(backbone) -> str:
    """Name + a hash of the weights: new weights under the same name get their own cache."""
    params = list(backbone.model.parameters())
    probe = np.concatenate([p.detach().flatten()[:256].float().cpu().numpy() for p in params[:8]])
    return f"{backbone.name.replace('/', '_')}_{hashlib.md5(probe.tobytes()).hexdigest()[:8]}"


def embed_smear(image_name: str, prep: dict, backbone) -> np.ndarray:
    """``cls_crop`` vectors of the matched cells (rows = ``prep["cell_ids"]``), cached by box."""
    from napari_reddino.embed.per_cell import crop_square
    from napari_reddino.runs.pipeline import read_image

    path = CACHE / f"emb_{backbone_key(backbone)}" / f"{image_name}.npz"
    cached = {}
    if path.is_file():
        old = np.load(path)
        cached = {tuple(b): v for b, v in zip(old["boxes"], old["vectors"])}
    boxes = [tuple(b) for b in prep["boxes"]]
    todo = [b for b in boxes if b not in cached]
    if todo:
        image = read_image(DATA / "images" / image_name)
        crops = np.stack([crop_square(image, (slice(b[0], b[1]), slice(b[2], b[3])), 1.5,
                                      backbone.img_size) for b in todo])
        for start in range(0, len(crops), 32):
            vectors, _ = backbone.forward(crops[start:start + 32])
            for b, v in zip(todo[start:start + 32], vectors):
                cached[b] = v
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, boxes=np.array(list(cached), np.int64).reshape(-1, 4),
                 vectors=np.stack(list(cached.values())))
    if not boxes:
        return np.zeros((0, backbone.embed_dim), np.float32)
    return np.stack([cached[b] for b in boxes]).astype(np.float32)


def load_cells(backbone_name: str, *, limit: int | None = None, method: str = "classical",
               log=print):
    """All labeled cells with their match, morphology, generic and embedding matrices."""
    from napari_reddino.embed.backbones import load_backbone

    table = pd.read_csv(DATA / "labels.csv")
    images = sorted(table["image"].unique())[:limit]
    backbone = load_backbone(backbone_name, device="cpu")
    parts, morph, generic, emb = [], [], [], []
    names = None
    for i, name in enumerate(images):
        cells = table[table["image"] == name].reset_index(drop=True)
        prep = prepare_smear(name, cells, method)
        vectors = embed_smear(name, prep, backbone)
        row_of = {int(c): r for r, c in enumerate(prep["cell_ids"])}
        cells["cell"] = prep["matched_label"]
        cells["row"] = [row_of.get(int(c), -1) for c in cells["cell"]]
        cells["n_segmented"] = int(prep["n_segmented"])
        ok = cells["row"].to_numpy() >= 0
        rows = cells.loc[ok, "row"].to_numpy()
        morph.append(prep["morph"][rows])
        generic.append(prep["generic"][rows])
        emb.append(vectors[rows])
        names = list(prep["morph_names"])
        parts.append(cells)
        if i % 25 == 0:
            log(f"  {i + 1}/{len(images)} smears prepared")
    cells = pd.concat(parts, ignore_index=True)
    return {"cells": cells, "morph": np.concatenate(morph), "generic": np.concatenate(generic),
            "embedding": np.concatenate(emb), "morph_names": names,
            "meta": json.dumps({"backbone": backbone.name, "segmentation": code_version()})}
