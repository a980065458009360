"""Whole-smear patch grids, the PCA overlay's placement, and per-cell embeddings."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from skimage.draw import disk, ellipse

from napari_reddino.embed.grid import (
    cell_embeddings,
    grid_mask,
    iter_patch_grid,
    keep_bounds,
    overlay_transform,
    patch_grid,
    pca_rgb,
    tile_starts,
)
from napari_reddino.progress import Cancelled, Progress

P = 14
SMEAR = Path(__file__).resolve().parents[3] / "shared/data/chula_rbc_diseases/hs/1.JPG"


def textured(shape, seed=0):
    """A smooth random color field: every window differs, like a real smear."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(60, 200, (shape[0] // 16 + 2, shape[1] // 16 + 2, 3)).astype(np.uint8)
    image = np.repeat(np.repeat(coarse, 16, axis=0), 16, axis=1)[:shape[0], :shape[1]]
    return np.ascontiguousarray(image)


def window(image, y0, x0, size=224):
    """Reference window read: reflect-pad the image, cut at (y0, x0)."""
    pad = ((0, size), (0, size), (0, 0))
    return np.pad(image, pad, mode="reflect")[y0:y0 + size, x0:x0 + size]


@pytest.mark.parametrize(("extent", "stride"), [(16, 14), (40, 14), (41, 16), (100, 9), (7, 10)])
def test_windows_own_every_cell_once_nearest_their_center(extent, stride):
    starts = tile_starts(extent, 16, stride)
    bounds = keep_bounds(starts, 16, extent)
    owner = np.concatenate([np.full(hi - lo, k) for k, (lo, hi) in enumerate(bounds)])
    assert len(owner) == extent and np.all(np.diff(owner) >= 0)
    centers = np.array(starts) + 8
    for cell in range(extent):
        distance = np.abs(centers - (cell + 0.5))
        assert distance[owner[cell]] == distance.min()
        assert starts[owner[cell]] <= cell < starts[owner[cell]] + 16


def test_one_window_image_gives_the_backbone_patch_tokens(tiny_backbone):
    image = textured((224, 224))
    grid = patch_grid(image, tiny_backbone)
    _, expected = tiny_backbone.forward(image[None])
    assert grid.shape == (16, 16, 192) and grid.dtype == np.float32
    np.testing.assert_allclose(grid, expected[0], atol=1e-5)


def test_stitched_grid_takes_each_cell_from_its_nearest_window(tiny_backbone):
    image = textured((400, 530), seed=1)  # not a multiple of 14: edges are padded
    grid = patch_grid(image, tiny_backbone, overlap=4 * P, batch_size=3)
    gh, gw = -(-400 // P), -(-530 // P)
    assert grid.shape == (gh, gw, 192)
    ys, xs = tile_starts(gh, 16, 12), tile_starts(gw, 16, 12)
    expected = np.zeros_like(grid)
    for ty, (y0, y1) in zip(ys, keep_bounds(ys, 16, gh)):
        for tx, (x0, x1) in zip(xs, keep_bounds(xs, 16, gw)):
            _, tokens = tiny_backbone.forward(window(image, ty * P, tx * P)[None])
            expected[y0:y1, x0:x1] = tokens[0, y0 - ty:y1 - ty, x0 - tx:x1 - tx]
    np.testing.assert_allclose(grid, expected, atol=1e-4)


def test_mask_skips_background_windows_and_progress_counts_windows(tiny_backbone):
    image = textured((300, 560), seed=2)
    mask = np.zeros(image.shape[:2], bool)
    mask[20:60, 30:80] = True  # only the first window owns foreground
    reports = []
    gen = iter_patch_grid(image, tiny_backbone, mask=mask, overlap=2 * P)
    while True:
        try:
            reports.append(next(gen))
        except StopIteration as stop:
            grid = stop.value
            break
    full = patch_grid(image, tiny_backbone, overlap=2 * P)
    assert all(isinstance(r, Progress) for r in reports) and reports[-1].done == 1
    rows = keep_bounds(tile_starts(grid.shape[0], 16, 14), 16, grid.shape[0])[0][1]
    cols = keep_bounds(tile_starts(grid.shape[1], 16, 14), 16, grid.shape[1])[0][1]
    np.testing.assert_allclose(grid[:rows, :cols], full[:rows, :cols], atol=1e-5)
    assert not grid[rows:].any() and not grid[:, cols:].any()


def test_gray_rgba_and_bad_arguments(tiny_backbone):
    gray = textured((230, 240))[..., 0]
    rgba = np.dstack([np.repeat(gray[..., None], 3, axis=2), np.full(gray.shape, 255, np.uint8)])
    np.testing.assert_allclose(patch_grid(gray, tiny_backbone), patch_grid(rgba, tiny_backbone),
                               atol=1e-5)
    with pytest.raises(ValueError, match="multiple of the patch size"):
        patch_grid(gray, tiny_backbone, overlap=10)
    with pytest.raises(ValueError, match="mask shape"):
        patch_grid(gray, tiny_backbone, mask=np.ones((5, 5), bool))
    with pytest.raises(ValueError):
        patch_grid(np.zeros((1, 1, 3), np.uint8), tiny_backbone)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        patch_grid(gray, tiny_backbone, cancel=cancel)


def test_pca_overlay_sits_on_the_bright_cell(tiny_backbone):
    """A unique bright blob: its PCA-overlay pixels, placed with overlay_transform in a napari
    Image layer, are the cells under the blob's image pixels."""
    import napari.layers

    image = np.full((448, 448, 3), 120, np.uint8)
    top, left = 5 * P + 3, 9 * P + 6  # deliberately not on the patch lattice
    image[top:top + 3 * P, left:left + 3 * P] = (250, 40, 40)
    grid = patch_grid(image, tiny_backbone)
    rgb = pca_rgb(grid)
    assert rgb.shape == (32, 32, 3) and rgb.dtype == np.float32
    assert rgb.min() >= 0 and rgb.max() <= 1
    first = rgb[..., 0]  # the first component: the one thing that stands out is the blob
    distance = np.abs(first - np.median(first))
    hot = distance > 0.5 * distance.max()
    scale, translate = overlay_transform(tiny_backbone)
    assert scale == (14.0, 14.0) and translate == (6.5, 6.5)
    layer = napari.layers.Image(rgb, rgb=True, scale=scale, translate=translate)
    inner = [(y, x) for y in range(top + 7, top + 3 * P - 7)
             for x in range(left + 7, left + 3 * P - 7)]
    blob_cells = {tuple(np.round(layer.world_to_data(yx)).astype(int)) for yx in inner}
    assert all(hot[cell] for cell in blob_cells)
    assert {tuple(c) for c in np.argwhere(hot)} <= {
        tuple(np.round(layer.world_to_data((y, x))).astype(int))
        for y in range(top, top + 3 * P) for x in range(left, left + 3 * P)}


@pytest.mark.skipif(not SMEAR.is_file(), reason="shared smear photos not present")
def test_pca_with_foreground_mask_on_a_real_smear(tiny_backbone):
    from skimage.io import imread

    image = imread(SMEAR)[:280, :420]
    foreground = image.mean(axis=2) < np.percentile(image.mean(axis=2), 60)  # stained cells
    grid = patch_grid(image, tiny_backbone)
    mask = grid_mask(foreground, P)
    rgb = pca_rgb(grid, mask)
    inside = rgb[mask]
    assert rgb.shape == (20, 30, 3)
    assert np.percentile(inside, 1, axis=0) == pytest.approx(0, abs=0.02)
    assert np.percentile(inside, 99, axis=0) == pytest.approx(1, abs=0.02)
    with pytest.raises(ValueError, match="grid's shape"):
        pca_rgb(grid, foreground)


def cells_image():
    """Two identical discs, one ellipse, one small disc, on a flat background."""
    image = np.full((300, 400, 3), 225, np.uint8)
    labels = np.zeros(image.shape[:2], np.int32)
    for label, (rr, cc) in {
        3: disk((70, 70), 22), 7: disk((70, 300), 22), 9: ellipse(210, 150, 12, 32),
        12: disk((220, 320), 10),
    }.items():
        image[rr, cc] = (190, 80, 90)
        labels[rr, cc] = label
    return image, labels


def test_cls_crop_identical_cells_identical_vectors(tiny_backbone):
    image, labels = cells_image()
    emb = cell_embeddings(image, labels, tiny_backbone, pooling="cls_crop", image_name="s1")
    assert list(emb.label) == [3, 7, 9, 12] and set(emb.image) == {"s1"}
    assert emb.vectors.shape == (4, 192) and emb.pooling == "cls_crop"
    assert emb.backbone == tiny_backbone.name
    twin = np.linalg.norm(emb.vectors[0] - emb.vectors[1])
    assert twin < 1e-5
    # random-init DINOv2 blocks start with LayerScale 1e-5, so the CLS token moves little;
    # a different shape must still move it far beyond numerical noise
    assert np.linalg.norm(emb.vectors[0] - emb.vectors[2]) > 50 * (twin + 1e-6)


def test_patch_mean_pools_the_grid_under_each_mask(tiny_backbone):
    image, labels = cells_image()
    grid = patch_grid(image, tiny_backbone)
    emb = cell_embeddings(image, labels, tiny_backbone, pooling="patch_mean", grid=grid)
    again = cell_embeddings(image, labels, tiny_backbone, pooling="patch_mean")
    np.testing.assert_allclose(emb.vectors, again.vectors, atol=1e-5)
    # reference: area-weighted mean computed pixel by pixel
    cells = grid[np.minimum(np.arange(300) // P, grid.shape[0] - 1)][
        :, np.minimum(np.arange(400) // P, grid.shape[1] - 1)]
    for row, label in enumerate(emb.label):
        np.testing.assert_allclose(emb.vectors[row], cells[labels == label].mean(axis=0),
                                   rtol=1e-4, atol=1e-5)
    twins = np.linalg.norm(emb.vectors[0] - emb.vectors[1])
    assert twins < np.linalg.norm(emb.vectors[0] - emb.vectors[2])
    with pytest.raises(ValueError, match="pooling"):
        cell_embeddings(image, labels, tiny_backbone, pooling="max")
    with pytest.raises(ValueError, match="differ in size"):
        cell_embeddings(image, labels[:100], tiny_backbone)


def test_no_cells_gives_an_empty_table(tiny_backbone):
    image, labels = cells_image()
    emb = cell_embeddings(image, np.zeros_like(labels), tiny_backbone)
    assert emb.vectors.shape == (0, 192) and len(emb.label) == 0


LARGE_SMEAR_SCRIPT = """
import sys, threading, time, numpy as np, dask.array as da
from napari_reddino.embed.backbones import load_backbone
from napari_reddino.embed.grid import patch_grid

def anonymous_rss():  # heap memory only: mapped library pages come and go under memory pressure
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("RssAnon"))

folder, store = sys.argv[1], sys.argv[2]
backbone = load_backbone("local-dir:" + folder, device="cpu")
backbone.forward(np.zeros((8, 224, 224, 3), np.uint8))
baseline = peak = anonymous_rss()
running = True
def watch():
    global peak
    while running:
        peak = max(peak, anonymous_rss())
        time.sleep(0.02)
watcher = threading.Thread(target=watch)
watcher.start()
grid = patch_grid(da.from_zarr(store + "/image.zarr"), backbone, out=store + "/grid.zarr")
running = False
watcher.join()
probe = np.asarray(grid[-3:, -3:])
print(grid.shape[0], grid.shape[1], grid.shape[2], baseline, peak, float(np.abs(probe).sum()))
"""


def embed_large_smear(tmp_path, side: int, backbone_dir) -> tuple[tuple[int, ...], int, float]:
    """Write a side x side zarr smear, embed it in a fresh process: (grid shape, heap growth)."""
    import os

    import zarr

    store = tmp_path / f"smear{side}"
    image = zarr.create_array(store=str(store / "image.zarr"), shape=(side, side, 3),
                              dtype="uint8", chunks=(1024, 1024, 3))
    rng = np.random.default_rng(0)
    for y in range(0, side, 1024):  # written band by band: the smear never sits in RAM
        image[y:y + 1024] = rng.integers(0, 255, (min(1024, side - y), side, 3), dtype=np.uint8)
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(LARGE_SMEAR_SCRIPT), str(backbone_dir),
         str(store)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "MALLOC_ARENA_MAX": "2"})
    assert run.returncode == 0, run.stderr[-3000:]
    h, w, d, baseline, peak, probe = run.stdout.split()
    return (int(h), int(w), int(d)), int(peak) - int(baseline), float(probe)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_large_dask_smear_streams_with_bounded_memory(tmp_path, tiny_backbone_dir):
    """A 4096 x 4096 smear (48 MB, read lazily from zarr through dask) embeds into a 63 MB zarr
    grid; the heap grows by the working set of a few batches, not with the smear: 4x the
    pixels of a 2048 smear (+83 MB of image and grid) costs < 32 MB more and < 100 MB in all.
    glibc's per-thread malloc arenas would fragment on top, so the runs cap them."""
    shape, small_growth, _ = embed_large_smear(tmp_path, 2048, tiny_backbone_dir)
    assert shape == (147, 147, 192)
    shape, large_growth, probe = embed_large_smear(tmp_path, 4096, tiny_backbone_dir)
    assert shape == (293, 293, 192)
    assert probe > 0  # the last cells were computed, not left at the fill value
    added_data = (4096**2 - 2048**2) * 3 + (293**2 - 147**2) * 192 * 4
    assert large_growth - small_growth < 32 * 2**20 < added_data / 2, (
        f"heap grew {small_growth / 2**20:.0f} MB (2048) vs {large_growth / 2**20:.0f} MB (4096)")
    assert large_growth < 100 * 2**20


class PatchMeanBackbone:
    """A stand-in ViT whose patch token is its patch's mean color: resolution is checkable."""

    patch_size, img_size, embed_dim, name = 14, 56, 3, "patch-mean"
    grid_size = img_size // patch_size

    def preprocess(self, batch):
        return torch.from_numpy(np.asarray(batch, np.float32) / 255.0).permute(0, 3, 1, 2)

    def forward_tensor(self, x):
        p = self.patch_size
        patches = torch.nn.functional.avg_pool2d(x, p).permute(0, 2, 3, 1)
        return patches.mean(dim=(1, 2)), patches


def test_shifted_tilings_put_an_edge_at_sub_patch_resolution():
    from napari_reddino.embed.fine_grid import fine_grid, overlay_transform_fine

    image = np.zeros((70, 84, 3), np.uint8)
    image[:, 21:] = 255  # an edge inside a patch (14 px), on a 7 px fine-cell border
    backbone = PatchMeanBackbone()
    coarse = np.asarray(patch_grid(image, backbone))[..., 0]
    fine = fine_grid(image, backbone, subdivide=2)[..., 0]
    assert fine.shape == (10, 12)
    assert np.allclose(coarse[:, 1], 0.5)  # one tiling: the edge is only known to +-7 px
    assert (fine[:, :3] < 0.5).all() and (fine[:, 3:] > 0.5).all()  # now at pixel 21
    np.testing.assert_allclose(fine[:, 2], 0.25)
    np.testing.assert_allclose(fine[:, 3], 0.75)
    assert overlay_transform_fine(14, 2) == ((7.0, 7.0), (3.0, 3.0))
    with pytest.raises(ValueError, match="divide the patch size"):
        fine_grid(image, backbone, subdivide=3)
    from napari_reddino.embed.fine_grid import iter_overlay
    from napari_reddino.progress import run_to_completion

    labels = np.zeros(image.shape[:2], np.int32)
    labels[7:28, 0:14], labels[35:56, 28:49], labels[7:28, 56:77] = 1, 2, 3
    rgb, scale, _ = run_to_completion(iter_overlay(image, backbone, labels=labels, subdivide=4))
    assert scale == (7.0, 7.0) and rgb.shape == (10, 12, 3)  # patch 14: 4 falls back to 2
    assert (rgb[labels[3::7, 3::7] == 0] == 0).all()  # the glass stays black


def test_cell_pca_colors_cell_kinds_apart_not_the_shared_rim_pattern():
    from napari_reddino.embed.fine_grid import cell_pca_rgb

    rng = np.random.default_rng(0)
    labels = np.zeros((40, 40), np.int32)
    grid = rng.normal(0, 0.01, (40, 40, 16)).astype(np.float32)
    grid[..., 5] += 50.0  # background tokens: far away, must not drive the colors
    rim, kind = np.eye(16)[0] * 3.0, np.eye(16)[1] * 1.0  # shared pattern > kind difference
    for n, (y, x) in enumerate([(2, 2), (2, 22), (22, 2), (22, 22)], start=1):
        labels[y:y + 16, x:x + 16] = n
        grid[y:y + 16, x:x + 16] += kind * (n % 2)
        grid[y:y + 16, x:x + 16][[0, -1]] += rim  # rim rows of every cell
    rgb = cell_pca_rgb(grid, labels, cell_size=1)
    color = {n: rgb[labels == n].mean(axis=0) for n in range(1, 5)}
    between = np.abs(color[1] - color[2]).max()
    assert between > 0.5  # odd and even cells in clearly different colors
    assert np.abs(color[1] - color[3]).max() < 0.1 < between
    assert (rgb[labels == 0] == 0).all()
    from napari_reddino.embed.overlay import pca_rgb

    # the first component (red): the kind of cell here, the shared rim pattern in a plain PCA
    plain = pca_rgb(grid, mask=labels > 0)
    assert rgb[..., 0][labels == 1].std() < 0.05
    assert plain[..., 0][labels == 1].std() > 0.3


def test_one_white_cell_does_not_take_the_colors_from_the_red_cells():
    """20 red cells of two kinds and one white cell 40x further out: the red kinds differ on the
    first color (red), where a fit on every cell spends it on the white cell."""
    from napari_reddino.embed.fine_grid import _project, cell_pca_rgb

    rng = np.random.default_rng(1)
    labels = np.zeros((50, 50), np.int32)
    grid = rng.normal(0, 0.01, (50, 50, 16)).astype(np.float32)
    corners = [(y, x) for y in range(0, 50, 10) for x in range(0, 50, 10)][:21]
    for n, (y, x) in enumerate(corners, start=1):
        labels[y:y + 8, x:x + 8] = n
        grid[y:y + 8, x:x + 8, 1] += 1.0 * (n % 2) + rng.normal(0, 0.05)
    grid[labels == 21, 2] += 40.0  # the white cell

    def red_gap(rgb):
        odd = np.mean([rgb[labels == n, 0].mean() for n in range(1, 21, 2)])
        return abs(odd - np.mean([rgb[labels == n, 0].mean() for n in range(2, 21, 2)]))

    rgb = cell_pca_rgb(grid, labels, cell_size=1)
    assert red_gap(rgb) > 0.7 and (rgb[labels == 0] == 0).all()
    means = np.stack([grid[labels == n].mean(axis=0) for n in range(1, 22)])
    assert red_gap(_project(grid, means, labels > 0)) < 0.1  # the basis of every cell
