"""The real labeled cell set for model selection: Chula RBC-12 dev-split crops, and a baseline.

``make_chula_cell_folder`` cuts one square crop (64 px by default, native pixel scale, so cell
size stays a cue as it is for a haematologist) centered at each labeled center of
``chula_rbc12_dev/labels.csv`` and writes the harness's ``<source>/<class>/*.png`` layout with
the smear as the source. ``generic_descriptor`` is the hand-made baseline a backbone has to
beat: color histograms, a HOG and a uniform-LBP histogram, nothing specific to red cells.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd

from training.eval.datasets import INDEX_NAME, crop_centered

EXCLUDED_CLASSES = ("uncategorized",)  # 24 cells with no morphology class


def read_chula_labels(root: str | Path) -> pd.DataFrame:
    """``labels.csv`` of a Chula RBC-12 folder (image, x, y, class_name), checked."""
    table_path = Path(root) / "labels.csv"
    if not table_path.is_file():
        raise ValueError(f"no labels.csv in {root}: expected the chula_rbc12_dev folder")
    table = pd.read_csv(table_path)
    missing = {"image", "x", "y", "class_name"} - set(table.columns)
    if missing:
        raise ValueError(f"{table_path} lacks column(s) {sorted(missing)}")
    return table[~table["class_name"].isin(EXCLUDED_CLASSES)].reset_index(drop=True)


def make_chula_cell_folder(
    root: str | Path, out: str | Path, *, crop: int = 64, max_cells: int | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Write ``out/<image>/<class>/<row>.png`` around every labeled center, and ``cells.csv``."""
    root, out = Path(root), Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder for the Chula cell set")
    table = read_chula_labels(root)
    if max_cells is not None and max_cells < len(table):
        table = table.sample(n=max_cells, random_state=seed).sort_index()
    rows = []
    for image_name, cells in table.groupby("image", sort=True):
        image = iio.imread(root / "images" / image_name)[..., :3]
        source = Path(image_name).stem
        for index, cell in cells.iterrows():
            label = str(cell["class_name"]).replace(" ", "_")
            relative = Path(source) / label / f"{index:05d}.png"
            (out / relative.parent).mkdir(parents=True, exist_ok=True)
            iio.imwrite(out / relative, crop_centered(image, cell["y"], cell["x"], crop))
            rows.append({"path": relative.as_posix(), "label": label, "source": source})
    index_table = pd.DataFrame(rows)
    index_table.to_csv(out / INDEX_NAME, index=False)
    return index_table


def generic_descriptor(crops: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, D) float32: RGB histograms + HOG + uniform LBP histogram."""
    from skimage.color import rgb2gray
    from skimage.feature import hog, local_binary_pattern

    features = []
    for crop in crops:
        hist = [np.histogram(crop[..., c], bins=16, range=(0, 256))[0] for c in range(3)]
        gray = rgb2gray(crop)
        cell = max(crop.shape[0] // 4, 4)
        hog_vec = hog(gray, orientations=9, pixels_per_cell=(cell, cell), cells_per_block=(2, 2))
        lbp = local_binary_pattern((gray * 255).astype(np.uint8), 8, 1, method="uniform")
        lbp_hist = np.histogram(lbp, bins=10, range=(0, 10))[0]
        n_pixels = gray.size
        features.append(np.concatenate([np.concatenate(hist) / n_pixels, hog_vec,
                                        lbp_hist / n_pixels]))
    return np.asarray(features, dtype=np.float32)


class DescriptorModel:
    """:func:`generic_descriptor` behind the backbone interface the harness uses."""

    name, img_size, patch_size = "generic-descriptor", 0, 0

    def forward(self, batch: np.ndarray):
        return generic_descriptor(batch), None


def make_chula_cli(argv: list[str]) -> int:
    """``python -m training.eval make-chula``."""
    parser = argparse.ArgumentParser(
        prog="python -m training.eval make-chula",
        description="Write a <smear>/<class>/*.png folder of labeled Chula RBC-12 crops.",
    )
    parser.add_argument("--chula", required=True, help="chula_rbc12_dev folder (labels.csv)")
    parser.add_argument("--out", required=True, help="new (or empty) folder to write")
    parser.add_argument("--crop", type=int, default=64, help="crop side in pixels (native scale)")
    parser.add_argument("--max-cells", type=int, default=0, help="0: every labeled cell")
    args = parser.parse_args(argv)
    table = make_chula_cell_folder(
        args.chula, args.out, crop=args.crop, max_cells=args.max_cells or None
    )
    print(f"wrote {len(table)} crops to {args.out}\n{table['label'].value_counts().to_string()}")
    return 0
