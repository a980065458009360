"""Per-cell embeddings: a backbone vector for every labeled cell of a smear.

Two poolings: ``cls_crop`` (a square crop centered on the cell, resized to the backbone's input,
CLS token: the cell seen as RedDino was trained) and ``patch_mean`` (the whole-smear patch grid
averaged under the cell's mask, area-weighted: one pass over the smear serves every cell).
"""

from __future__ import annotations

import math
import threading

import numpy as np
from PIL import Image
from scipy import ndimage

from napari_reddino import names as nm
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

POOLINGS = nm.POOLINGS


def _cell_boxes(labels: np.ndarray) -> tuple[np.ndarray, list[tuple[slice, slice]]]:
    """Ascending label ids and their bounding boxes."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    objects = ndimage.find_objects(labels)
    return ids, [objects[i - 1] for i in ids]


def crop_square(image, box: tuple[slice, slice], margin: float, size: int) -> np.ndarray:
    """Square crop centered on ``box`` (side = longest bbox side * margin), resized to size."""
    (ys, xs), (height, width) = box, image.shape[:2]
    side = max(2, math.ceil(max(ys.stop - ys.start, xs.stop - xs.start) * margin))
    y0 = (ys.start + ys.stop - side) // 2
    x0 = (xs.start + xs.stop - side) // 2
    part = image[max(y0, 0):min(y0 + side, height), max(x0, 0):min(x0 + side, width)]
    part = np.asarray(part.compute() if hasattr(part, "compute") else part)[..., :3]
    pads = ((max(-y0, 0), max(y0 + side - height, 0)), (max(-x0, 0), max(x0 + side - width, 0)))
    if any(any(p) for p in pads):
        mode = "reflect" if min(part.shape[:2]) > 1 else "edge"
        part = np.pad(part, (*pads, (0, 0)), mode=mode)
    if part.shape[0] != size:
        part = np.asarray(Image.fromarray(part).resize((size, size), Image.Resampling.BICUBIC))
    return part


def _cls_crop_vectors(image, boxes, backbone, margin, batch_size, cancel):
    vectors = np.empty((len(boxes), backbone.embed_dim), np.float32)
    batch = np.empty((batch_size, backbone.img_size, backbone.img_size, 3), np.uint8)
    for start in range(0, len(boxes), batch_size):
        check_cancel(cancel)
        chunk = boxes[start:start + batch_size]
        for slot, box in enumerate(chunk):
            batch[slot] = crop_square(image, box, margin, backbone.img_size)
        vectors[start:start + len(chunk)], _ = backbone.forward(batch[:len(chunk)])
        yield Progress(start + len(chunk), len(boxes), "embedding cell crops")
    return vectors


def _patch_mean_vectors(labels, ids, boxes, grid, patch_size, cancel):
    """Mean of the grid tokens under each cell, weighted by the cell's area in each grid cell."""
    p = patch_size
    vectors = np.empty((len(ids), grid.shape[-1]), np.float32)
    for row, (cell_id, (ys, xs)) in enumerate(zip(ids, boxes)):
        if row % 256 == 0:
            check_cancel(cancel)
            yield Progress(row, len(ids), "pooling patch tokens under cells")
        gy0, gy1 = ys.start // p, math.ceil(ys.stop / p)
        gx0, gx1 = xs.start // p, math.ceil(xs.stop / p)
        inside = np.zeros(((gy1 - gy0) * p, (gx1 - gx0) * p), np.float32)
        crop = labels[gy0 * p:gy1 * p, gx0 * p:gx1 * p] == cell_id
        inside[:crop.shape[0], :crop.shape[1]] = crop
        weights = inside.reshape(gy1 - gy0, p, gx1 - gx0, p).mean(axis=(1, 3))
        tokens = np.asarray(grid[gy0:gy1, gx0:gx1], np.float32)
        vectors[row] = np.tensordot(weights, tokens, axes=([0, 1], [0, 1])) / weights.sum()
    return vectors


def iter_cell_embeddings(image, labels, backbone, *, pooling: str = "cls_crop", grid=None,
                         image_name: str = "image", margin: float = 1.5, batch_size: int = 16,
                         cancel: threading.Event | None = None) -> ProgressGen:
    """Embed every labeled cell (rows in ascending label order) -> ``CellEmbeddings``.

    ``grid`` (from :func:`napari_reddino.embed.grid.iter_patch_grid`) is what ``patch_mean`` pools
    (``embed.iter_cell_embeddings`` computes it when missing); ``margin`` scales the crop side
    of ``cls_crop``.
    """
    from napari_reddino.io.cell_table import CellEmbeddings
    from napari_reddino.io.image_checks import check_image

    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    image = check_image(image)
    labels = np.asarray(labels)
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be a 2-D integer array, got {labels.dtype} {labels.shape}")
    if tuple(labels.shape) != tuple(image.shape[:2]):
        raise ValueError(f"labels {labels.shape} and image {image.shape[:2]} differ in size")
    if margin < 1.0:
        raise ValueError(f"margin must be >= 1 (the crop holds the whole cell), got {margin}")
    ids, boxes = _cell_boxes(labels)
    if pooling == "cls_crop":
        vectors = yield from _cls_crop_vectors(image, boxes, backbone, margin, batch_size, cancel)
    else:
        if grid is None:  # embed.iter_cell_embeddings computes it (per_cell imports no embed.grid)
            raise ValueError("patch_mean pooling needs the smear's patch grid: pass grid= "
                             "(napari_reddino.embed.grid.iter_cell_embeddings computes it)")
        expected = (math.ceil(labels.shape[0] / backbone.patch_size),
                    math.ceil(labels.shape[1] / backbone.patch_size))
        if tuple(grid.shape[:2]) != expected:
            raise ValueError(f"grid {tuple(grid.shape[:2])} does not match the labels' {expected}")
        vectors = yield from _patch_mean_vectors(labels, ids, boxes, grid, backbone.patch_size,
                                                 cancel)
    yield Progress(len(ids), len(ids), f"embedded {len(ids)} cells")
    return CellEmbeddings(vectors=vectors, image=np.full(len(ids), str(image_name)),
                          label=ids.astype(np.int64), backbone=backbone.name, pooling=pooling)


def cell_embeddings(image, labels, backbone, **kwargs):
    """Synchronous :func:`iter_cell_embeddings`."""
    return run_to_completion(iter_cell_embeddings(image, labels, backbone, **kwargs))
