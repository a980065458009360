"""A real labeled cell set for the harness: crops of the BCCD boxes (RBC / WBC / platelets).

BCCD has no subject metadata; its ImageSets split (train / val / test images) is used as the
source, so leave-one-source-out means "held-out photographs". RBCs outnumber the other classes
ten to one, hence a seeded per-class cap.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
from skimage.transform import resize

from training.eval.datasets import INDEX_NAME, read_cell_image

SPLITS = ("train", "val", "test")


def read_bccd_boxes(bccd_root: str | Path) -> pd.DataFrame:
    """One row per annotated box: image, label, source split and pixel box (x0, y0, x1, y1)."""
    root = Path(bccd_root)
    annotations = sorted((root / "Annotations").glob("*.xml"))
    if not annotations:
        raise ValueError(f"no BCCD annotations in {root / 'Annotations'} (expected VOC .xml files)")
    split_of = {}
    for split in SPLITS:
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        if split_file.is_file():
            split_of |= dict.fromkeys(split_file.read_text().split(), split)
    rows = []
    for xml_path in annotations:
        tree = ET.parse(xml_path).getroot()
        stem = Path(tree.findtext("filename", xml_path.stem + ".jpg")).stem
        for obj in tree.iter("object"):
            box = obj.find("bndbox")
            if box is None:
                continue
            coords = [int(float(box.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax")]
            rows.append(
                {
                    "image": stem,
                    "label": obj.findtext("name", "").strip(),
                    "source": split_of.get(stem, "unsplit"),
                    **dict(zip(("x0", "y0", "x1", "y1"), coords)),
                }
            )
    return pd.DataFrame(rows)


def _square_crop(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, size: int) -> np.ndarray:
    """The box's centered square (side 1.2 x its longer edge, edge-padded), resized to ``size``."""
    side = max(int(1.2 * max(x1 - x0, y1 - y0)), 4)
    center_y, center_x = (y0 + y1) // 2, (x0 + x1) // 2
    padded = np.pad(image, ((side, side), (side, side), (0, 0)), mode="edge")
    top, left = center_y - side // 2 + side, center_x - side // 2 + side
    square = padded[top : top + side, left : left + side]
    return (resize(square, (size, size, 3), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)


def make_bccd_cell_folder(
    bccd_root: str | Path,
    out: str | Path,
    *,
    crop: int = 64,
    max_per_class: int | None = 300,
    seed: int = 0,
) -> pd.DataFrame:
    """Write ``out/<split>/<class>/<image>_<i>.png`` crops and ``out/cells.csv``."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; choose a new folder for the BCCD cell set")
    boxes = read_bccd_boxes(bccd_root)
    boxes = boxes[(boxes.x1 > boxes.x0) & (boxes.y1 > boxes.y0)].reset_index(names="box")
    if max_per_class is not None:
        rng = np.random.default_rng(seed)
        keep = [
            rows
            if len(rows) <= max_per_class
            else rows.iloc[np.sort(rng.choice(len(rows), max_per_class, replace=False))]
            for _, rows in boxes.groupby("label", sort=True)
        ]
        boxes = pd.concat(keep).sort_values("box")
    records = []
    for image_name, rows in boxes.groupby("image", sort=True):
        image = read_cell_image(Path(bccd_root) / "JPEGImages" / f"{image_name}.jpg")
        for row in rows.itertuples():
            relative = Path(row.source) / row.label / f"{image_name}_{row.box:05d}.png"
            (out / relative.parent).mkdir(parents=True, exist_ok=True)
            iio.imwrite(out / relative, _square_crop(image, row.x0, row.y0, row.x1, row.y1, crop))
            records.append(
                {
                    "path": relative.as_posix(),
                    "label": row.label,
                    "source": row.source,
                    "image": image_name,
                }
            )
    table = pd.DataFrame(records)
    table.to_csv(out / INDEX_NAME, index=False)
    return table
