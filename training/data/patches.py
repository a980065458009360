"""Training images from smears: non-overlapping tiles that hold cells, and per-cell crops.

RedDino trained on 224x224 tiles of whole smears; a tile of bare glass teaches the model nothing,
so tiles whose foreground (pixels darker or more saturated than the background) is too small are
skipped. Cell crops center one segmented cell in a window for cell-level pretraining: either a
fixed-size window (:func:`cell_crops`) or, as the plugin's ``cls_crop`` pooling sees a cell, a
square of ``margin`` times the cell's box resized to one size (:func:`extract_cell_crops`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from skimage.color import rgb2gray
from skimage.filters import threshold_otsu
from skimage.measure import regionprops

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Gray/RGBA/16-bit/float images -> (H, W, 3) uint8, the one layout the augmenter takes."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"expected a gray, RGB or RGBA image, got shape {image.shape}")
    image = image[..., :3]
    if image.dtype == np.uint8:
        return np.ascontiguousarray(image)
    data = np.nan_to_num(image.astype(np.float64))
    top = 1.0 if data.max() <= 1.0 else (255.0 if data.max() <= 255 else 65535.0)
    return np.clip(data / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def foreground_mask(image: np.ndarray) -> np.ndarray:
    """Cells vs background by Otsu on darkness: stained cells are darker than the glass."""
    gray = rgb2gray(image)
    if gray.max() - gray.min() < 1e-3:
        return np.zeros(gray.shape, bool)
    return gray < threshold_otsu(gray)


def tile_patches(
    image: np.ndarray, size: int = 224, *, min_foreground: float = 0.1
) -> Iterator[tuple[int, int, np.ndarray]]:
    """Yield ``(y, x, tile)`` for each non-overlapping ``size`` tile with enough foreground.

    The foreground threshold is computed on the whole smear, so a tile of empty glass is judged
    against the smear's own background rather than against itself.
    """
    image = as_rgb_uint8(image)
    if size < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    fg = foreground_mask(image)
    for y in range(0, image.shape[0] - size + 1, size):
        for x in range(0, image.shape[1] - size + 1, size):
            if fg[y : y + size, x : x + size].mean() >= min_foreground:
                yield y, x, image[y : y + size, x : x + size]


def cell_crops(
    image: np.ndarray, labels: np.ndarray, size: int = 224
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(label, crop)``: a ``size`` window centered on each cell, padded with edge pixels."""
    image = as_rgb_uint8(image)
    labels = np.asarray(labels)
    if labels.shape != image.shape[:2]:
        raise ValueError(f"labels {labels.shape} do not match image {image.shape[:2]}")
    half = size // 2
    padded = np.pad(image, ((half, size), (half, size), (0, 0)), mode="edge")
    for region in regionprops(labels.astype(np.int64)):
        cy, cx = (round(c) for c in region.centroid)
        yield region.label, padded[cy : cy + size, cx : cx + size]


def list_images(folders: list[str | Path]) -> list[Path]:
    """Every image file under ``folders``, recursive and sorted (order independent of the OS)."""
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise FileNotFoundError(f"image folder {folder} does not exist")
        if folder.is_file():
            files.append(folder)
            continue
        files.extend(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(files)


def _read_smear(path: Path, scale: float) -> np.ndarray:
    from skimage.transform import rescale

    image = as_rgb_uint8(iio.imread(path))
    if scale != 1.0:
        image = as_rgb_uint8(rescale(image, scale, channel_axis=2, anti_aliasing=True))
    return image


def _smear_files(sources: list[str | Path]) -> list[Path]:
    files = list_images(list(sources))
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found under {sources}")
    return files


def iter_cell_crops(
    sources: list[str | Path], *, size: int = 112, scale: float = 1.0, margin: float = 2.0
) -> Iterator[tuple[int, Path, int, np.ndarray]]:
    """``(smear index, smear path, cell label, crop)`` for every segmented cell (lazily).

    Each crop is a square of ``margin`` x the cell's longest box side, centered on the cell and
    resized to ``size``: the view of a cell the plugin's ``cls_crop`` pooling embeds (there with
    margin 1.5; a wider margin here leaves room for the random resized crops of training).
    The arguments are checked now, before any file is written.
    """
    if margin < 1.0:
        raise ValueError(f"margin must be >= 1 (the crop holds the whole cell), got {margin}")
    return _cell_crops(_smear_files(sources), size, scale, margin)


def _cell_crops(files: list[Path], size: int, scale: float, margin: float):
    from scipy import ndimage

    from napari_reddino.embed.per_cell import crop_square
    from napari_reddino.segment.dispatch import classical_segment

    for index, path in enumerate(files):
        image = _read_smear(path, scale)
        labels = classical_segment(image)
        for label, box in enumerate(ndimage.find_objects(labels), start=1):
            if box is not None:
                yield index, path, label, crop_square(image, box, margin, size)


def iter_tiles(
    sources: list[str | Path], *, size: int = 224, min_foreground: float = 0.1, scale: float = 1.0
) -> Iterator[tuple[int, Path, tuple[int, int], np.ndarray]]:
    """``(smear index, smear path, (y, x), tile)`` for every kept tile of every smear (lazily)."""
    if size < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    return _tiles(_smear_files(sources), size, min_foreground, scale)


def _tiles(files: list[Path], size: int, min_foreground: float, scale: float):
    for index, path in enumerate(files):
        image = _read_smear(path, scale)
        for y, x, tile in tile_patches(image, size, min_foreground=min_foreground):
            yield index, path, (y, x), tile


def extract_cell_crops(
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    size: int = 112,
    scale: float = 1.0,
    margin: float = 2.0,
) -> int:
    """Segment every smear (classical backend), write one PNG per cell; return how many."""
    crops = iter_cell_crops(sources, size=size, scale=scale, margin=margin)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, path, label, crop in crops:
        iio.imwrite(out / f"{index:05d}_{path.stem}_cell{label:04d}.png", crop)
        count += 1
    return count


def extract_patches(
    sources: list[str | Path],
    out_dir: str | Path,
    *,
    size: int = 224,
    min_foreground: float = 0.1,
    scale: float = 1.0,
) -> int:
    """Tile every smear under ``sources`` into PNG patches in ``out_dir``; return how many.

    ``scale`` resizes smears first (e.g. 0.5 to match a lower-magnification target). The same
    tiles as shards (:func:`training.data.shards.write_shards`) load several times faster.
    """
    tiles = iter_tiles(sources, size=size, min_foreground=min_foreground, scale=scale)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    for index, path, (y, x), tile in tiles:
        iio.imwrite(out / f"{index:05d}_{path.stem}_{y}_{x}.png", tile)
        count += 1
    return count
