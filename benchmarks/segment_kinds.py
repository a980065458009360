"""Object kinds on real and synthetic smears (issue 24): white cells, platelets, drawn marks.

Runs the segmentation of the working tree ("new") beside the committed one ("main": the
``segment`` package as ``git show HEAD`` has it, loaded under another module name) and prints one
table with both and their difference. Every number reads the cell table the way users do:
``segment.counted`` decides which objects count (the working tree's definition for both, so the
difference is the segmenter's).

chula_rbc12_dev (labels.csv: centers of labelled red cells):
  - centers of cells whole in the image that fall in a counted cell (target >= 99 %): a center
    at least the radius of a large red cell of the smear (95th percentile of main's whole red
    cells) from every border. The older proxy, one *median* radius, lets in cells the border cuts
    (a hand-placed center 20 px from the edge of a 45 px cell), which rightly do not count; it is
    printed too;
  - counted cells touching the image border (target 0);
  - on the smears with drawn arrows (64-92, 217-221): centers in a wbc/other object (target 0)
    and objects > 3x the smear's median red cell typed wbc with no nucleus (target 0);
  - smears with a plausibility warning.
BCCD (VOC boxes): platelets found and typed right, white cells typed right and with box IoU
>= 0.5 (the object's bounding box against the annotated one), red cells typed right.
Synthetic: instance F1 at IoU 0.5 of ``classical_segment`` on seeds the tests never use.

    OMP_NUM_THREADS=1 python benchmarks/segment_kinds.py [--limit 60] [--bccd-limit 100]
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage import io

from napari_reddino.segment import counted as counted_now
from napari_reddino.segment import kind as kind_now
from napari_reddino.segment.metrics import instance_score
from napari_reddino.synthetic.smear import RBC_CLASSES, synthetic_dataset

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segmentation_real import _box_object, bccd_images

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
if not DATA.is_dir():
    DATA = Path("/work/shared/data")
ARROW_SMEARS = {*range(64, 93), *range(217, 222)}
BCCD_KIND = {"RBC": "rbc", "WBC": "wbc", "Platelets": "platelet"}
SEGMENT_FILES = ("__init__", "cellpose_backend", "check", "classical", "counted", "density",
                 "dispatch", "kind", "marks", "metrics", "tiled")  # absent ones load empty


def load_main(tmp: Path, ref: str = "HEAD"):
    """The ``segment`` package of commit ``ref`` as module ``_main_segment`` (imports rewritten)."""
    package = tmp / "_main_segment"
    package.mkdir()
    for name in SEGMENT_FILES:
        path = f"src/napari_reddino/segment/{name}.py"
        text = subprocess.run(["git", "show", f"{ref}:{path}"], cwd=ROOT, capture_output=True,
                              text=True, check=False).stdout
        (package / f"{name}.py").write_text(text.replace("napari_reddino.segment", "_main_segment"))
    sys.path.insert(0, str(tmp))
    return importlib.import_module("_main_segment.dispatch")


def _spread(items: list, limit: int | None) -> list:
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def _kinds(result) -> np.ndarray:
    out = np.full(int(result.labels.max()) + 1, "", dtype=object)
    out[result.features["label"].to_numpy()] = result.features["kind"].to_numpy()
    return out


def _nucleus_free_giants(result, rgb: np.ndarray, median: float) -> int:
    """Objects over 3x the median red cell typed wbc that hold no nucleus (marks excluded)."""
    table = result.features
    nuclear = kind_now.nuclear_pixels(rgb, result.labels)
    counts = np.bincount(result.labels.ravel(), weights=nuclear.ravel(),
                         minlength=int(result.labels.max()) + 1)
    giants = table[(table["kind"] == "wbc") & (table["area"] > 3 * median)]
    return int((counts[giants["label"].to_numpy()] < kind_now.WBC_NUCLEUS * median).sum())


def _inside(ys, xs, shape, margin: float) -> np.ndarray:
    """Centers at least ``margin`` pixels from every image border."""
    return ((ys >= margin) & (ys < shape[0] - margin)
            & (xs >= margin) & (xs < shape[1] - margin))


def chula(modules: dict, limit: int | None) -> pd.DataFrame:
    root = DATA / "chula_rbc12_dev"
    cells = pd.read_csv(root / "labels.csv")
    rows = []
    for image in _spread(sorted(cells["image"].unique()), limit):
        rgb = io.imread(root / "images" / image)[..., :3]
        sub = cells[cells["image"] == image]
        ys = np.clip(sub["y"].to_numpy(), 0, rgb.shape[0] - 1)
        xs = np.clip(sub["x"].to_numpy(), 0, rgb.shape[1] - 1)
        arrow = int(Path(image).stem) in ARROW_SMEARS
        radius = None
        for name, dispatch in modules.items():
            start = time.process_time()
            result = dispatch.segment(rgb)
            seconds = time.process_time() - start
            table = counted_now.add_counted(result.features)
            kinds = _kinds(result)
            ok = np.zeros(len(kinds), bool)
            ok[table["label"].to_numpy()] = table["counted"].to_numpy()
            whole = table[(table["kind"] == "rbc") & ~table["touches_border"]]
            median = float(whole["area"].median()) if len(whole) else np.nan
            if radius is None:  # one eligibility rule for both methods: main's red cells
                radius = np.sqrt(median / np.pi) if median > 0 else 0.0
                large = np.sqrt(np.percentile(whole["area"], 95) / np.pi) if len(whole) else 0.0
            inside = _inside(ys, xs, rgb.shape, radius)
            whole_in = _inside(ys, xs, rgb.shape, large)
            hit = result.labels[ys, xs]
            rows.append({
                "method": name, "image": image, "arrow": arrow, "seconds": seconds,
                "centers": int(inside.sum()), "in_counted": int(ok[hit][inside].sum()),
                "centers_whole": int(whole_in.sum()),
                "in_counted_whole": int(ok[hit][whole_in].sum()),
                "counted_border": int((table["counted"] & table["touches_border"]).sum()),
                "in_wbc_other": int(np.isin(kinds[hit], ("wbc", "other")).sum()),
                "giant_wbc_no_nucleus": _nucleus_free_giants(result, rgb, median),
                "wbc": int((table["kind"] == "wbc").sum()),
                "warning": result.warning is not None})
    return pd.DataFrame(rows)


def _box_iou(a, b) -> float:
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def bccd(modules: dict, limit: int | None) -> pd.DataFrame:
    rows = []
    for _xml_path, rgb, boxes in bccd_images(limit, DATA):
        for name, dispatch in modules.items():
            result = dispatch.segment(rgb)
            kinds = _kinds(result)
            slices = ndimage.find_objects(result.labels)
            for cls, box in boxes:
                obj = _box_object(result.labels, box)
                iou = 0.0
                if obj:
                    rows_, cols = slices[obj - 1]
                    iou = _box_iou(box, (cols.start, rows_.start, cols.stop, rows_.stop))
                rows.append({"method": name, "class": cls, "found": obj > 0,
                             "kind_ok": bool(obj > 0 and kinds[obj] == BCCD_KIND.get(cls)),
                             "iou": iou})
    return pd.DataFrame(rows)


def synthetic(modules: dict, seeds) -> pd.DataFrame:
    """F1 at IoU 0.5 of ``classical_segment`` on 768x768 smears of three subjects per seed."""
    rows = []
    for seed in seeds:
        for smear in synthetic_dataset(3, 1, (768, 768), seed=seed):
            labels = smear.labels
            edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
            cells = smear.cells
            ignore = set(cells["label"][~cells["class"].isin(RBC_CLASSES)
                                        | cells["label"].isin(edge)].tolist())
            for name, dispatch in modules.items():
                found = dispatch.classical_segment(smear.image)
                score = instance_score(labels, found, ignore_truth=ignore)
                rows.append({"method": name, "smear": f"{seed}/{smear.metadata['subject']}",
                             "f1": score.f1})
    return pd.DataFrame(rows)


def _line(label: str, values: dict, unit: str = "%", target: str = "") -> str:
    main, new = values.get("main", np.nan), values.get("new", np.nan)
    diff = new - main
    return f"{label:<52}{main:>9.2f}{new:>9.2f}{diff:>+9.2f} {unit:<3}{target}"


def report(dev: pd.DataFrame, boxes: pd.DataFrame, synth: pd.DataFrame) -> None:
    print(f"{'measure':<52}{'main':>9}{'new':>9}{'new-main':>9}     target")
    by = {}
    if len(dev):
        for name, part in dev.groupby("method"):
            arrows = part[part["arrow"]]
            by[name] = {
                "centers": 100 * part["in_counted"].sum() / max(part["centers"].sum(), 1),
                "centers_whole": (100 * part["in_counted_whole"].sum()
                                  / max(part["centers_whole"].sum(), 1)),
                "border": part["counted_border"].sum(),
                "arrow_in": arrows["in_wbc_other"].sum(),
                "giant": arrows["giant_wbc_no_nucleus"].sum(),
                "giant_all": part["giant_wbc_no_nucleus"].sum(),
                "in_all": part["in_wbc_other"].sum(),
                "warn": part["warning"].sum(), "wbc": part["wbc"].sum(),
                "s": part["seconds"].mean(), "n_arrow": len(arrows), "n": len(part)}
        first = next(iter(by.values()))
        print(f"chula_rbc12_dev: {first['n']} smears ({first['n_arrow']} with arrows), "
              f"{dev['centers_whole'].sum() // len(by)} labelled centers of whole cells "
              f"({dev['centers'].sum() // len(by)} >= 1 median radius inside)")
        for key, label, unit, target in (
                ("centers_whole", "centers of whole cells in a counted cell", "%", ">= 99"),
                ("centers", "centers >= 1 median radius in, in a counted cell", "%", ""),
                ("border", "counted cells touching the border", "n", "0"),
                ("arrow_in", "arrow smears: centers in a wbc/other object", "n", "0"),
                ("giant", "arrow smears: >3x median typed wbc, no nucleus", "n", "0"),
                ("in_all", "all smears: centers in a wbc/other object", "n", ""),
                ("giant_all", "all smears: >3x median typed wbc, no nucleus", "n", ""),
                ("wbc", "objects typed wbc (dev has almost none)", "n", ""),
                ("warn", "smears with a plausibility warning", "n", ""),
                ("s", "CPU s per smear (segment + table + kinds)", "s", "")):
            print(_line(label, {m: v[key] for m, v in by.items()}, unit, target))
    if len(boxes):
        print(f"BCCD: {boxes.groupby('method').size().iloc[0]} boxes")
        for cls, what, target in (("Platelets", "found", ">= 85"),
                                  ("Platelets", "typed right (of found)", ">= 85"),
                                  ("Platelets", "typed right (of all)", ""),
                                  ("WBC", "typed right (of all)", ">= 95"),
                                  ("WBC", "box IoU >= 0.5", ">= 90"),
                                  ("RBC", "found", ""),
                                  ("RBC", "typed right (of found)", ">= 99")):
            values = {}
            for name, part in boxes[boxes["class"] == cls].groupby("method"):
                if what == "found":
                    values[name] = 100 * part["found"].mean()
                elif what == "typed right (of found)":
                    values[name] = 100 * part["kind_ok"].sum() / max(part["found"].sum(), 1)
                elif what == "typed right (of all)":
                    values[name] = 100 * part["kind_ok"].mean()
                else:
                    values[name] = 100 * (part["iou"] >= 0.5).mean()
            print(_line(f"{cls} {what}", values, "%", target))
    if len(synth):
        for stat in ("min", "mean"):
            values = synth.groupby("method")["f1"].agg(stat).to_dict()
            print(_line(f"synthetic F1 at IoU 0.5, {stat} of {synth['smear'].nunique()} smears",
                        values, "", ">= 0.90"))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="N dev smears, spread")
    parser.add_argument("--bccd-limit", type=int, default=None, help="N BCCD smears, spread")
    parser.add_argument("--seeds", type=int, nargs="*", default=[101, 102, 103])
    parser.add_argument("--no-main", action="store_true", help="the working tree only")
    parser.add_argument("--main-ref", default="HEAD", help="the commit compared against")
    args = parser.parse_args(argv)
    if not DATA.is_dir():
        sys.exit(f"no real data at {DATA}")
    from napari_reddino.segment import dispatch
    with tempfile.TemporaryDirectory() as tmp:
        modules = {} if args.no_main else {"main": load_main(Path(tmp), args.main_ref)}
        modules["new"] = dispatch
        dev = chula(modules, args.limit)
        boxes = bccd(modules, args.bccd_limit)
        synth = synthetic(modules, args.seeds)
    report(dev, boxes, synth)


if __name__ == "__main__":
    main()
