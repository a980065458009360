"""Regenerate ``docs/images/palette.png``: the colour-blind-safe class colors on a real smear.

Run under a display (or Xvfb), from the repository root::

    XDG_CACHE_HOME=$(mktemp -d) xvfb-run -a -s "-screen 0 1600x1150x24" \
        python docs/make_palette_screenshot.py

Opens image 236 of the Chula RBC-12 dev split (``../shared/data``; ten of its classes on one
photograph), segments and embeds it through the docks, labels every segmented cell that holds
a hematologist's labelled centre with that class (the 12 Chula classes + "uncategorised": 13
colors), shows the class colors on the smear and hovers a target cell: napari's status bar
starts with its class. Then napari "restarts" (a fresh viewer, the same photograph segmented and
embedded again): the labeling dock offers the labels back, ``docs/images/restore_offer.png``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
import pandas as pd
from make_screenshots import IMAGES, segment_and_embed, settle
from skimage.io import imread

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.label.classes import CHULA_CLASS_SET
from napari_reddino.widgets._linking import camera_of

DEV = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chula_rbc12_dev"
IMAGE = "236.jpg"
CHULA_NAMES = {"Normal cell": "normal", "Target cell": "target cell", "Burr cell": "burr cell",
               "uncategorised": "uncategorised"}


def _open_embedded(dev: Path):
    """A viewer with the photograph, segmented and embedded through the docks."""
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1550, 1080)
    keep_triton_away_from_mesa_llvm()
    image = viewer.add_image(imread(dev / "images" / IMAGE), name=Path(IMAGE).stem, rgb=True)
    [labels] = segment_and_embed(viewer, [image])
    _d, labeling = viewer.window.add_plugin_dock_widget("napari-reddino", "Label & propagate")
    labeling.classes.set_class_set(CHULA_CLASS_SET.add("uncategorised"))  # 13 classes
    return viewer, labels, labeling


def main() -> None:
    dev = Path(sys.argv[1]) if len(sys.argv) > 1 else DEV
    truth = pd.read_csv(dev / "labels.csv")
    truth = truth[truth["image"] == IMAGE]
    viewer, labels, labeling = _open_embedded(dev)
    table = labeling.layer_cells.table
    row_of = {int(label): i for i, label in enumerate(table["label"])}
    hits = labels.data[truth["y"].to_numpy(int), truth["x"].to_numpy(int)]
    names = truth["class_name"].map(lambda c: CHULA_NAMES.get(c, c.lower())).to_numpy()
    for name in pd.unique(names):
        rows = sorted({row_of[h] for h in hits[names == name] if h in row_of})
        if rows:
            labeling.session.select(rows)
            labeling.classes.set_active(name)
            labeling.assign_selection()
    labeling.session.select([])
    labeling.show_classes.setChecked(True)

    target = table.index[table["class"].astype(str) == "target cell"][0]
    y, x = table.loc[target, ["centroid_y", "centroid_x"]].to_numpy(float)
    viewer.reset_view()
    camera_of(viewer).zoom *= 1.05
    viewer.layers.selection.active = labels  # napari's status bar reads the active layer
    viewer.cursor.position = (y, x)
    settle(viewer, 8.0)  # the autosave notification fades first
    path = IMAGES / "palette.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}: {int(table['class'].notna().sum())} cells labelled in "
          f"{table['class'].nunique()} classes; status {str(viewer.status)[:120]!r}")
    viewer.close()

    viewer, _labels, labeling = _open_embedded(dev)  # after a restart: the offer on top
    settle(viewer, 2.0)
    path = IMAGES / "restore_offer.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}: {labeling.restore_bar.restore_button.text()!r}")
    viewer.close()


if __name__ == "__main__":
    main()
