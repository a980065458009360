"""A patch-token grid at sub-patch resolution, and a PCA overlay colored by cell, not by grid.

One tiling gives one token per p x p patch: a red cell is 2-3 tokens wide and the overlay shows
the patch grid more than the cells. Averaging ``k x k`` tilings shifted by p/k pixels gives a
token for every (p/k)-pixel cell (each the mean of the k^2 patches that cover it, a box filter
of the backbone's view): the same features, k times finer, at k^2 times the cost.

Color: the principal components are fitted on one mean token *per cell* (a connected piece of
foreground), so they span what differs between cells (size, shape, pallor) rather than the
rim-to-center pattern every cell shares, and on the typical cells only (a white cell would
take the first axis); every token is then projected on them.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from napari_reddino.embed.grid import iter_patch_grid
from napari_reddino.embed.overlay import grid_mask, pca_rgb
from napari_reddino.progress import Progress, ProgressGen, run_to_completion

MAX_FINE_BYTES = 1024 * 2**20  # the fine grid is held in memory
OUTLIER_Z = 4.0  # cells further out on a color axis do not shape the colors


def iter_fine_grid(image, backbone, *, subdivide: int = 2, batch_size: int = 8, mask=None,
                   cancel: threading.Event | None = None) -> ProgressGen[np.ndarray]:
    """(ceil(H/s), ceil(W/s), D) float32 grid, s = patch / ``subdivide``: shifted tilings averaged.

    Fine cell (a, b) covers image pixels [a*s, (a+1)*s) x [b*s, (b+1)*s); ``subdivide=1`` is the
    ordinary :func:`~napari_reddino.embed.grid.iter_patch_grid`.
    """
    p = backbone.patch_size
    if subdivide < 1 or p % subdivide:
        raise ValueError(f"subdivide must divide the patch size {p}, got {subdivide}")
    image = np.asarray(image)
    s = p // subdivide
    height, width = image.shape[:2]
    fine_h, fine_w = math.ceil(height / s), math.ceil(width / s)
    if 4.0 * fine_h * fine_w * backbone.embed_dim > MAX_FINE_BYTES:
        raise ValueError(f"a {subdivide}x finer grid of a {height}x{width} image exceeds "
                         f"{MAX_FINE_BYTES >> 20} MB; use subdivide=1 for images this large")
    fine = np.zeros((fine_h, fine_w, backbone.embed_dim), np.float32)
    shifts = [(dy, dx) for dy in range(subdivide) for dx in range(subdivide)]
    rows, cols = np.arange(fine_h), np.arange(fine_w)
    for n, (dy, dx) in enumerate(shifts):
        # pad top/left by (dy, dx) fine cells: padded patch i covers fine cells k*i - dy ...
        oy, ox = dy * s, dx * s
        padded = image if not (oy or ox) else np.pad(
            image, ((oy, 0), (ox, 0)) + ((0, 0),) * (image.ndim - 2), mode="reflect")
        padded_mask = None
        if mask is not None:
            padded_mask = np.pad(np.asarray(mask, bool), ((oy, 0), (ox, 0)))
        grid = yield from _quiet(iter_patch_grid(padded, backbone, batch_size=batch_size,
                                                 mask=padded_mask, cancel=cancel))
        fine += np.asarray(grid)[((rows + dy) // subdivide)[:, None],
                                 ((cols + dx) // subdivide)[None, :]]
        yield Progress(n + 1, len(shifts), f"tiling {n + 1}/{len(shifts)}")
    fine /= len(shifts)
    return fine


def _quiet(gen):
    """Run a sub-generator, dropping its progress (the caller reports per tiling)."""
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value
    yield  # pragma: no cover - makes this a generator


def fine_grid(image, backbone, **kwargs) -> np.ndarray:
    """Synchronous :func:`iter_fine_grid`."""
    return run_to_completion(iter_fine_grid(image, backbone, **kwargs))


def foreground(image: np.ndarray) -> np.ndarray:
    """Cell pixels when no labels are given: darker than the glass by Otsu's threshold."""
    from skimage.color import rgb2gray
    from skimage.filters import threshold_otsu

    gray = rgb2gray(np.asarray(image)[..., :3]) if np.asarray(image).ndim == 3 else image
    if np.ptp(gray) < 1e-6:
        return np.zeros(gray.shape, bool)
    return gray < threshold_otsu(gray)


def cell_pca_rgb(grid: np.ndarray, cells: np.ndarray, cell_size: int) -> np.ndarray:
    """PCA-3 colors fitted on one mean token per cell; background stays black.

    ``cells`` (H, W): instance labels, or a bool foreground whose connected pieces are the cells;
    ``cell_size`` the image pixels per grid cell.
    """
    from scipy import ndimage

    cells = np.asarray(cells)
    labels = ndimage.label(cells > 0)[0] if cells.dtype == bool else cells
    h, w = grid.shape[:2]
    fg = grid_mask(labels > 0, cell_size)[:h, :w]
    if fg.sum() < 3:
        raise ValueError("fewer than 3 grid cells fall on cells: nothing to fit a PCA on")
    # the label at each grid cell's center pixel
    ys = np.minimum(np.arange(h) * cell_size + cell_size // 2, labels.shape[0] - 1)
    xs = np.minimum(np.arange(w) * cell_size + cell_size // 2, labels.shape[1] - 1)
    ids = np.where(fg, labels[ys[:, None], xs[None, :]], 0)
    present = np.unique(ids[ids > 0])
    if len(present) < 3:  # too few cells for a between-cell basis: fit on the tokens
        rgb = pca_rgb(grid, mask=fg)
    else:
        flat = grid.reshape(-1, grid.shape[-1])
        means = np.stack([flat[(ids == i).ravel()].mean(axis=0) for i in present])
        typical = _typical_cells(means)
        rgb = _project(grid, means[typical], fg & np.isin(ids, present[typical]))
    rgb[~fg] = 0.0
    return rgb


def _typical_cells(means: np.ndarray, z_max: float = OUTLIER_Z) -> np.ndarray:
    """Cells whose scores on the first 3 principal axes lie within ``z_max`` robust z-scores.

    Why: one white cell among 60 red ones takes the first axis (and the color stretch) to
    itself, and every red cell comes out the same hue. Fitted on the typical cells, the axes
    span the red cells' differences; the outliers are still projected, at saturated colors.
    """
    from sklearn.decomposition import PCA

    keep = np.ones(len(means), bool)
    if len(means) < 10:
        return keep
    scores = PCA(n_components=3, random_state=0).fit_transform(means)
    center = np.median(scores, axis=0)
    mad = 1.4826 * np.median(np.abs(scores - center), axis=0)
    z = np.abs(scores - center) / np.where(mad > 0, mad, 1.0)
    keep = (z <= z_max).all(axis=1)
    return keep if keep.sum() >= 3 else np.ones(len(means), bool)


def _project(grid: np.ndarray, fit: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Tokens on the PCA-3 axes of ``fit``, stretched between the 1st and 99th percentile of
    the ``reference`` grid cells."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=3, random_state=0).fit(fit)
    rgb = pca.transform(grid.reshape(-1, grid.shape[-1])).reshape(*grid.shape[:2], 3)
    low, high = np.percentile(rgb[reference], [1, 99], axis=0)
    span = np.where(high > low, high - low, 1.0)
    return np.clip((rgb - low) / span, 0.0, 1.0).astype(np.float32)


def overlay_transform_fine(patch_size: int, subdivide: int):
    """napari ``(scale, translate)`` for a grid of (patch/subdivide)-pixel cells."""
    s = patch_size / subdivide
    return (s, s), ((s - 1) / 2, (s - 1) / 2)


def iter_overlay(image, backbone, *, labels=None, subdivide: int = 2, cells_only: bool = True,
                 grid=None, cancel: threading.Event | None = None) -> ProgressGen:
    """The dock's PCA overlay: ``(rgb, scale, translate)`` at patch/``subdivide`` resolution.

    ``cells_only`` fits the colors on one mean token per cell (``labels``, else the Otsu
    foreground); ``grid`` an already embedded single tiling, reused when ``subdivide`` is 1.
    """
    # the finest split of the patch not above ``subdivide`` (patch 14: 4 -> 2, 7 -> 7)
    subdivide = max(d for d in range(1, max(subdivide, 1) + 1) if backbone.patch_size % d == 0)
    if subdivide == 1 and grid is not None:
        fine = np.asarray(grid)
    else:
        fine = yield from iter_fine_grid(image, backbone, subdivide=subdivide, cancel=cancel)
    if cells_only:
        cells = labels if labels is not None else foreground(image)
        rgb = cell_pca_rgb(fine, cells, backbone.patch_size // subdivide)
    else:
        rgb = pca_rgb(fine)
    return (rgb, *overlay_transform_fine(backbone.patch_size, subdivide))
