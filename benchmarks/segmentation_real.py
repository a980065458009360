"""Segmentation on real smears: labeled Chula RBC-12 centers and BCCD boxes, old vs new backend.

For ``chula_rbc12_dev`` (labels.csv: one center + class per labeled red cell) it prints the
share of labeled centers inside a segmented object ("found"), inside an object that holds no
other labeled center ("1:1"), inside an object of kind ``rbc``, per class. For BCCD (VOC boxes)
it prints the recall of RBC/WBC/platelet boxes (the box center inside an object, or an object
covering >= 1/3 of the box's central half) and the share of found boxes whose object has the
right ``kind``. Time is CPU seconds per image (segmentation, cell table, kinds and check) on one
thread (OMP_NUM_THREADS=1). Methods: ``classical_v1`` (the backend before issue 11, frozen copy
in ``segment_v1.py``, labels only), ``classical`` (current) and ``cellpose`` when its weights
are present.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_real.py [--limit 60] [--bccd-limit 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
from skimage import io

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segment_v1 import classical_v1

from napari_reddino.segment.dispatch import segment

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BCCD_KIND = {"RBC": "rbc", "WBC": "wbc", "Platelets": "platelet"}


def _spread(items: list, limit: int | None) -> list:
    """``limit`` items evenly spread over the list (images come in blocks of one source)."""
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _kinds(labels: np.ndarray, table: pd.DataFrame | None) -> np.ndarray:
    """kind per label id (index = id; '' for background or a backend without kinds)."""
    out = np.full(int(labels.max()) + 1, "", dtype=object)
    if table is not None and "kind" in table:
        out[table["label"].to_numpy()] = table["kind"].to_numpy()
    return out


def run_method(name: str, rgb: np.ndarray):
    """(labels, kinds, seconds) of one method on one image."""
    start = time.process_time()  # CPU time: stable on a shared machine
    if name == "classical_v1":
        labels, table = classical_v1(rgb), None
    else:
        result = segment(rgb, method=name)
        labels, table = result.labels, result.features
    return labels, _kinds(labels, table), time.process_time() - start


def chula(methods, limit):
    root = DATA / "chula_rbc12_dev"
    cells = pd.read_csv(root / "labels.csv")
    images = _spread(sorted(cells["image"].unique()), limit)
    rows = []
    for image in images:
        rgb = io.imread(root / "images" / image)[..., :3]
        sub = cells[cells["image"] == image]
        ys = np.clip(sub["y"].to_numpy(), 0, rgb.shape[0] - 1)
        xs = np.clip(sub["x"].to_numpy(), 0, rgb.shape[1] - 1)
        for name in methods:
            labels, kinds, seconds = run_method(name, rgb)
            hit = labels[ys, xs]
            per_object = np.bincount(hit, minlength=int(labels.max()) + 1)
            for cls, obj in zip(sub["class_name"], hit, strict=True):
                rows.append({"method": name, "image": image, "class": cls, "found": obj > 0,
                             "one_to_one": obj > 0 and per_object[obj] == 1,
                             "rbc": kinds[obj] == "rbc", "seconds": seconds,
                             "objects": int(labels.max())})
    return pd.DataFrame(rows)


def _boxes(xml_path: Path):
    for obj in ET.parse(xml_path).getroot().iter("object"):
        box = obj.find("bndbox")
        yield obj.findtext("name"), [int(float(box.findtext(k)))
                                     for k in ("xmin", "ymin", "xmax", "ymax")]


def _box_object(labels: np.ndarray, box) -> int:
    """The object at the box center, else the one covering most (>= 1/3) of its central half."""
    x0, y0, x1, y1 = box
    cy, cx = min((y0 + y1) // 2, labels.shape[0] - 1), min((x0 + x1) // 2, labels.shape[1] - 1)
    if labels[cy, cx]:
        return int(labels[cy, cx])
    qy, qx = max(1, (y1 - y0) // 4), max(1, (x1 - x0) // 4)
    core = labels[max(0, cy - qy): cy + qy, max(0, cx - qx): cx + qx].ravel()
    counts = np.bincount(core)
    counts[0] = 0
    best = int(counts.argmax())
    return best if counts[best] * 3 >= core.size else 0


def bccd_images(limit: int | None, data: Path = DATA):
    """``(annotation file, RGB image, [(class, box)...])`` of ``limit`` spread BCCD smears."""
    root = data / "bccd"
    for xml_path in _spread(sorted((root / "Annotations").glob("*.xml")), limit):
        path = root / "JPEGImages" / f"{xml_path.stem}.jpg"
        if path.is_file():
            yield xml_path, io.imread(path)[..., :3], list(_boxes(xml_path))


def bccd(methods, limit):
    rows = []
    for _xml_path, rgb, boxes in bccd_images(limit):
        for name in methods:
            labels, kinds, seconds = run_method(name, rgb)
            for cls, box in boxes:
                obj = _box_object(labels, box)
                rows.append({"method": name, "class": cls, "found": obj > 0,
                             "kind_ok": obj > 0 and kinds[obj] == BCCD_KIND.get(cls),
                             "seconds": seconds})
    return pd.DataFrame(rows)


def _pct(series) -> str:
    return f"{100 * series.mean():5.1f}"


def report(dev: pd.DataFrame, boxes: pd.DataFrame, methods) -> None:
    if len(dev):
        print(f"\nchula_rbc12_dev: {dev['image'].nunique()} images, "
              f"{len(dev) // len(methods)} labeled centers (% of centers)")
        head = f"{'class':<16}{'n':>6}" + "".join(f"{m + ' found':>21}{'1:1':>7}{'rbc':>7}"
                                                  for m in methods)
        print(head)
        order = ["all", *sorted(dev["class"].unique())]
        for cls in order:
            part = dev if cls == "all" else dev[dev["class"] == cls]
            line = f"{cls[:15]:<16}{len(part) // len(methods):>6}"
            for m in methods:
                sub = part[part["method"] == m]
                line += f"{_pct(sub['found']):>21}{_pct(sub['one_to_one']):>7}{_pct(sub['rbc']):>7}"
            print(line)
        for m in methods:
            per_image = dev[dev["method"] == m].groupby("image").first()
            print(f"{m}: {per_image['seconds'].mean():.3f} s/image (max "
                  f"{per_image['seconds'].max():.3f}), "
                  f"{per_image['objects'].mean():.1f} objects/image")
        old, new = "classical_v1", "classical"
        if old in methods and new in methods:
            ratio = (dev[dev["method"] == new]["found"].mean()
                     / max(dev[dev["method"] == old]["found"].mean(), 1e-9))
            print(f"found ratio {new}/{old}: {ratio:.3f}")
    if len(boxes):
        print("\nBCCD: recall of boxes (% found) and kind accuracy of found boxes")
        print(f"{'class':<12}{'n':>6}" + "".join(f"{m + ' found':>21}{'kind':>7}" for m in methods))
        for cls in ("RBC", "WBC", "Platelets"):
            part = boxes[boxes["class"] == cls]
            line = f"{cls:<12}{len(part) // len(methods):>6}"
            for m in methods:
                sub = part[part["method"] == m]
                kind = sub["kind_ok"].sum() / max(sub["found"].sum(), 1)
                line += f"{_pct(sub['found']):>21}{100 * kind:>7.1f}"
            print(line)
        for m in methods:
            print(f"{m}: {boxes[boxes['method'] == m]['seconds'].mean():.3f} s/image")


def cellpose_available() -> bool:
    from napari_reddino.segment.cellpose_backend import WeightsNotFoundError, cellpose_segment
    try:
        cellpose_segment(np.full((64, 64, 3), 230, np.uint8), model="cpsam", gpu=False)
    except WeightsNotFoundError as exc:
        print(f"cellpose: weights not found ({str(exc).splitlines()[0]}); skipped")
        return False
    except ImportError as exc:
        print(f"cellpose: not importable ({exc}); skipped")
        return False
    return True


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N chula dev images")
    parser.add_argument("--bccd-limit", type=int, default=None, help="first N BCCD images")
    parser.add_argument("--methods", nargs="+", default=["classical_v1", "classical"])
    parser.add_argument("--no-bccd", action="store_true")
    parser.add_argument("--csv", type=Path, default=None, help="write per-center rows here")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"no real data at {DATA}")
    methods = list(args.methods)
    if "cellpose" not in methods and cellpose_available():
        methods.append("cellpose")
    print(f"threads: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    dev = chula(methods, args.limit)
    boxes = pd.DataFrame() if args.no_bccd else bccd(methods, args.bccd_limit)
    if args.csv:
        dev.to_csv(args.csv, index=False)
    report(dev, boxes, methods)


if __name__ == "__main__":
    main()
