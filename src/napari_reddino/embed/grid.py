"""Whole-smear patch-token grids: tile, batch, run the backbone, stitch.

Grid cell (i, j) covers image pixels [i*p, (i+1)*p) x [j*p, (j+1)*p) (p = patch size); the grid
has ceil(H/p) x ceil(W/p) cells (edges are reflect-padded). Overlapping windows keep, for each
cell, the token of the window whose center is nearest (window borders, which see less context,
are dropped). Large smears stream: tiles are read lazily from a dask / zarr / memmap image and
the grid is written into a zarr store, so neither the image nor the grid must fit in RAM.
"""

from __future__ import annotations

import itertools
import math
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from napari_reddino.embed import per_cell
from napari_reddino.embed.backbones import Backbone
from napari_reddino.embed.overlay import grid_mask, overlay_transform, pca_rgb
from napari_reddino.io.image_checks import check_image
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

IN_MEMORY_GRID_BYTES = 512 * 2**20  # larger grids go to a zarr store


def tile_starts(extent: int, tile: int, stride: int) -> list[int]:
    """Window starts (in grid cells) covering ``extent`` cells; the last window ends at the edge."""
    if extent <= tile:
        return [0]
    count = math.ceil((extent - tile) / stride) + 1
    return [min(k * stride, extent - tile) for k in range(count)]


def keep_bounds(starts: list[int], tile: int, extent: int) -> list[tuple[int, int]]:
    """Per window, the cell range it owns: cells nearest its center (midpoints between centers)."""
    cuts = [(a + b + tile) // 2 for a, b in itertools.pairwise(starts)]
    return list(zip([0, *cuts], [*cuts, extent]))


def _as_rgb_uint8(tile: np.ndarray) -> np.ndarray:
    """Gray / RGB / RGBA uint8 window -> RGB uint8 (lazy images are checked tile by tile)."""
    if tile.dtype != np.uint8:
        raise ValueError(f"large / lazy images must be uint8, got {tile.dtype}")
    if tile.ndim == 2:
        return np.repeat(tile[..., None], 3, axis=2)
    return tile[..., :3]




class _BandReader:
    """Windows cut from one cached band of rows: one read (or dask compute) per window row."""

    def __init__(self, image, size: int, width_needed: int):
        self.image, self.size, self.width_needed = image, size, width_needed
        self.top, self.band = None, None

    def window(self, y0: int, x0: int) -> np.ndarray:
        if y0 != self.top:
            self.band = None  # release the previous band before reading the next one
            height, width = self.image.shape[:2]
            band = self.image[y0:min(y0 + self.size, height)]
            if hasattr(band, "compute"):  # in this thread: no extra pools / malloc arenas
                band = band.compute(scheduler="synchronous")
            band = _as_rgb_uint8(np.asarray(band))
            pad_y = self.size - band.shape[0]
            pad_x = max(0, self.width_needed - width)
            if pad_y or pad_x:  # reflect-pad at the image edges only
                mode = "reflect" if min(band.shape[:2]) > 1 else "edge"
                band = np.pad(band, ((0, pad_y), (0, pad_x), (0, 0)), mode=mode)
            self.top, self.band = y0, band
        return self.band[:, x0:x0 + self.size]


def _new_grid(shape: tuple[int, int, int], out, chunk_cells: int):
    """numpy for small grids, a zarr array (at ``out`` or a temp folder) otherwise."""
    nbytes = 4 * shape[0] * shape[1] * shape[2]
    if out is None and nbytes <= IN_MEMORY_GRID_BYTES:
        return np.zeros(shape, np.float32)
    import zarr

    store = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="reddino-grid-"))
    return zarr.create_array(store=str(store), shape=shape, dtype="float32", fill_value=0.0,
                             chunks=(chunk_cells, chunk_cells, shape[2]), overwrite=True)


def iter_patch_grid(image, backbone: Backbone, *, overlap: int | None = None,
                    batch_size: int = 8, mask=None, out: str | Path | None = None,
                    cancel: threading.Event | None = None) -> ProgressGen:
    """Embed a whole smear into a (ceil(H/p), ceil(W/p), D) float32 patch-token grid.

    ``overlap`` (pixels, a multiple of the patch size, default 2 patches) between windows;
    ``mask`` (H, W) bool skips windows whose owned cells hold no foreground (they stay 0);
    ``out`` a zarr folder for the grid (default: numpy if it fits ``IN_MEMORY_GRID_BYTES``).
    """
    image = check_image(image)
    p, size, cells = backbone.patch_size, backbone.img_size, backbone.grid_size
    overlap = 2 * p if overlap is None else int(overlap)
    if overlap % p or not 0 <= overlap < size:
        raise ValueError(f"overlap must be a multiple of the patch size {p} in [0, {size}), "
                         f"got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    height, width = image.shape[:2]
    if mask is not None and tuple(mask.shape[:2]) != (height, width):
        raise ValueError(f"mask shape {mask.shape} does not match the image {(height, width)}")
    grid_h, grid_w = math.ceil(height / p), math.ceil(width / p)
    stride = cells - overlap // p
    ys, xs = tile_starts(grid_h, cells, stride), tile_starts(grid_w, cells, stride)
    y_keep, x_keep = keep_bounds(ys, cells, grid_h), keep_bounds(xs, cells, grid_w)
    windows = [(ty, tx, ky, kx) for ty, ky in zip(ys, y_keep) for tx, kx in zip(xs, x_keep)]
    if mask is not None:
        windows = [w for w in windows if np.asarray(
            mask[w[2][0] * p:w[2][1] * p, w[3][0] * p:w[3][1] * p]).any()]
    grid = _new_grid((grid_h, grid_w, backbone.embed_dim), out, stride)
    batches = [windows[i:i + batch_size] for i in range(0, len(windows), batch_size)]
    buffers = np.empty((2, batch_size, size, size, 3), np.uint8)  # double buffer: load || run
    reader = _BandReader(image, size, xs[-1] * p + size)  # used by the one prefetch thread

    def load(index: int) -> np.ndarray:
        buffer = buffers[index % 2]
        for slot, (ty, tx, _, _) in enumerate(batches[index]):
            buffer[slot] = reader.window(ty * p, tx * p)
        return buffer[:len(batches[index])]

    done = 0
    yield Progress(0, len(windows), f"embedding {len(windows)} windows")
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="reddino-prefetch") as pool:
        pending = pool.submit(load, 0) if batches else None
        for index, batch_windows in enumerate(batches):
            check_cancel(cancel)
            tiles = pending.result()
            x = backbone.preprocess(tiles)  # copies out of the buffer, which is free again
            if index + 1 < len(batches):
                pending = pool.submit(load, index + 1)
            _, patches = backbone.forward_tensor(x)
            patches = patches.float().cpu().numpy()
            for tokens, (ty, tx, (y0, y1), (x0, x1)) in zip(patches, batch_windows):
                grid[y0:y1, x0:x1] = tokens[y0 - ty:y1 - ty, x0 - tx:x1 - tx]
            done += len(batch_windows)
            yield Progress(done, len(windows), f"embedded {done}/{len(windows)} windows")
    return grid


def patch_grid(image, backbone: Backbone, **kwargs):
    """Synchronous :func:`iter_patch_grid`."""
    return run_to_completion(iter_patch_grid(image, backbone, **kwargs))


def iter_cell_embeddings(image, labels, backbone, *, pooling: str = "cls_crop", grid=None,
                         cancel: threading.Event | None = None, **kwargs) -> ProgressGen:
    """:func:`napari_reddino.embed.per_cell.iter_cell_embeddings`, embedding the patch grid first
    when ``patch_mean`` pooling needs it and none is given."""
    if pooling == "patch_mean" and grid is None:
        grid = yield from iter_patch_grid(image, backbone, cancel=cancel)
    return (yield from per_cell.iter_cell_embeddings(image, labels, backbone, pooling=pooling,
                                                      grid=grid, cancel=cancel, **kwargs))


def cell_embeddings(image, labels, backbone, **kwargs):
    """Synchronous :func:`iter_cell_embeddings`."""
    return run_to_completion(iter_cell_embeddings(image, labels, backbone, **kwargs))


__all__ = [
    "cell_embeddings", "check_image", "grid_mask", "iter_cell_embeddings", "iter_patch_grid",
    "keep_bounds", "overlay_transform", "patch_grid", "pca_rgb", "tile_starts",
]
