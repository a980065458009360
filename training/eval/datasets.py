"""Labeled cell crops for backbone evaluation: reading them, and making a synthetic set.

A labeled set is a folder ``root/<source>/<class>/*.png`` (source = the subject, hospital or
scanner a cell came from: leave-one-source-out tests generalization across those batches) or a
CSV/Parquet table with ``path, label[, source]`` columns (relative paths are read from the
table's folder).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
from skimage.color import gray2rgb
from skimage.util import img_as_ubyte

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
TABLE_SUFFIXES = (".csv", ".parquet")
INDEX_NAME = "cells.csv"


@dataclass(frozen=True)
class LabeledCells:
    """One row per cell crop: its file, class and source, in a fixed (sorted) order."""

    paths: tuple[Path, ...]
    labels: np.ndarray  # (N,) str
    sources: np.ndarray  # (N,) str
    origin: str  # the folder or table it was read from

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels.tolist()))

    def summary(self) -> dict:
        counts = pd.Series(self.labels).value_counts().sort_index()
        return {
            "origin": self.origin,
            "n_cells": len(self),
            "classes": {str(k): int(v) for k, v in counts.items()},
            "sources": sorted(set(self.sources.tolist())),
        }


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _from_folder(root: Path) -> LabeledCells:
    rows = []
    for source_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for class_dir in sorted(p for p in source_dir.iterdir() if p.is_dir()):
            for path in sorted(filter(_is_image, class_dir.iterdir())):
                rows.append((path, class_dir.name, source_dir.name))
    if not rows:
        raise ValueError(
            f"no cell images found in {root}: expected {root}/<source>/<class>/*.png "
            f"(image types {', '.join(IMAGE_SUFFIXES)}) or a .csv/.parquet table"
        )
    paths, labels, sources = zip(*rows)
    return LabeledCells(tuple(paths), np.asarray(labels), np.asarray(sources), str(root))


def _from_table(table_path: Path) -> LabeledCells:
    if table_path.suffix.lower() == ".csv":
        table = pd.read_csv(table_path)
    else:
        table = pd.read_parquet(table_path)
    missing = {"path", "label"} - set(table.columns)
    if missing:
        raise ValueError(
            f"{table_path} lacks column(s) {sorted(missing)}: a cell table needs path, label "
            f"and optionally source (found {list(table.columns)})"
        )
    if table.empty:
        raise ValueError(f"{table_path} has no rows")
    if "source" not in table.columns:
        table = table.assign(source="all")
    table = table.dropna(subset=["path", "label"])
    paths = [Path(p) if Path(p).is_absolute() else table_path.parent / p for p in table["path"]]
    absent = [str(p) for p in paths if not p.is_file()]
    if absent:
        raise ValueError(
            f"{len(absent)} image(s) listed in {table_path} do not exist, e.g. {absent[0]}"
        )
    order = np.lexsort(
        (
            np.asarray([str(p) for p in paths]),
            table["label"].astype(str),
            table["source"].astype(str),
        )
    )
    return LabeledCells(
        tuple(paths[i] for i in order),
        table["label"].astype(str).to_numpy()[order],
        table["source"].astype(str).to_numpy()[order],
        str(table_path),
    )


def load_labeled_cells(data: str | Path) -> LabeledCells:
    """Read a labeled cell set from a ``<source>/<class>/`` folder or a path/label/source table."""
    path = Path(data)
    if not path.exists():
        raise ValueError(f"labeled cell data {path} does not exist")
    if path.is_dir():
        return _from_folder(path)
    if path.suffix.lower() in TABLE_SUFFIXES:
        return _from_table(path)
    raise ValueError(f"{path} is neither a folder nor a .csv/.parquet table")


def read_cell_image(path: str | Path) -> np.ndarray:
    """A crop as (H, W, 3) uint8 RGB: gray is repeated, alpha dropped, 16-bit/float rescaled."""
    try:
        image = iio.imread(path)
    except Exception as exc:  # imageio raises many types for unreadable files
        raise ValueError(f"cannot read cell image {path}: {exc}") from exc
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        image = gray2rgb(image)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"cell image {path} has shape {image.shape}; expected gray/RGB/RGBA")
    image = image[..., :3]
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating):
            image = np.clip(image, 0.0, 1.0)
        image = img_as_ubyte(image)
    return np.ascontiguousarray(image)


def cell_image_shape(path: str | Path) -> tuple[int, int]:
    """(height, width) of a crop from its header, without decoding the pixels."""
    try:
        shape = iio.improps(path).shape
    except Exception as exc:  # imageio raises many types for unreadable files
        raise ValueError(f"cannot read cell image {path}: {exc}") from exc
    return int(shape[0]), int(shape[1])


def crop_centered(image: np.ndarray, center_y: float, center_x: float, size: int) -> np.ndarray:
    """A ``size`` square around a centroid; edge pixels repeat where it leaves the image."""
    half = size // 2
    padded = np.pad(image, ((half, size), (half, size), (0, 0)), mode="edge")
    top, left = round(center_y), round(center_x)
    return padded[top : top + size, left : left + size]


def make_synthetic_cell_folder(
    out: str | Path,
    *,
    n_subjects: int = 3,
    images_per_subject: int = 2,
    shape: tuple[int, int] = (512, 512),
    crop: int = 64,
    seed: int = 0,
    balanced: bool = True,
    include_distractors: bool = False,
    batch_strength: float = 1.0,
) -> pd.DataFrame:
    """Write ``out/<subject>/<class>/<image>_<label>.png`` crops from synthetic smears.

    Subjects become sources, so leave-one-source-out measures robustness to the per-subject
    stain/illumination shift. ``balanced`` draws every RBC class equally often (the default
    smear is mostly discocytes). Also writes ``out/cells.csv`` (path, label, source, ...).
    """
    from napari_reddino.synthetic.smear import DISTRACTOR_CLASSES, RBC_CLASSES, synthetic_dataset

    if crop < 8:
        raise ValueError(f"crop must be at least 8 pixels, got {crop}")
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder for the synthetic cell set")
    class_weights = {name: 1.0 for name in RBC_CLASSES} if balanced else None
    if class_weights is not None and include_distractors:
        class_weights |= {name: 0.5 for name in DISTRACTOR_CLASSES}
    smears = synthetic_dataset(
        n_subjects=n_subjects,
        images_per_subject=images_per_subject,
        shape=shape,
        seed=seed,
        batch_strength=batch_strength,
        class_weights=class_weights,
    )
    rows = []
    for smear in smears:
        for cell in smear.cells.to_dict("records"):
            label, subject = str(cell["class"]), str(cell["subject"])
            if label in DISTRACTOR_CLASSES and not include_distractors:
                continue
            relative = Path(subject) / label / f"{cell['image']}_{int(cell['label']):05d}.png"
            (out / relative.parent).mkdir(parents=True, exist_ok=True)
            crop_image = crop_centered(smear.image, cell["centroid_y"], cell["centroid_x"], crop)
            iio.imwrite(out / relative, crop_image)
            rows.append(
                {
                    "path": relative.as_posix(),
                    "label": label,
                    "source": subject,
                    "image": str(cell["image"]),
                    "cell_label": int(cell["label"]),
                    "area": float(cell["area"]),
                }
            )
    table = pd.DataFrame(rows)
    table.to_csv(out / INDEX_NAME, index=False)
    return table
