"""Screenshots of the cell-colour overlay on three smears of different diagnoses, opened together
(docs/images/overlay_spherocytosis.png, overlay_thalassemia.png, overlay_elliptocytosis.png).

    xvfb-run -a -s "-screen 0 1600x1150x24" python docs/make_cell_colours_screenshots.py

Opens one smear of each diagnosis side by side, segments and embeds each with the docks'
defaults (bundled backbone; the embedding dock's default overlay: one colour per cell, one PCA
over every open smear), then zooms on each smear in turn with the dock's legend in view.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

sys.path.insert(0, str(Path(__file__).parent))
from make_screenshots import IMAGES, settle, wait_for

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.widgets._linking import camera_of

DISEASES = Path(__file__).parents[2] / "shared" / "data" / "chula_rbc_diseases"
SMEARS = (("spherocytosis", DISEASES / "hs" / "1.JPG"),
          ("thalassemia", DISEASES / "thalassemia" / "Thalassemia_1.JPG"),
          ("elliptocytosis", DISEASES / "he" / "sampleA0001.JPG"))
GAP = 100  # pixels between the smears


def main() -> None:
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1550, 1100)
    keep_triton_away_from_mesa_llvm()  # the docks were imported above, before the canvas
    seg_dock, seg = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    _d, emb = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    images, left = [], 0.0
    for key, path in SMEARS:
        image = viewer.open(str(path), layer_type="image", name=key)[0]
        image.translate = (0.0, left)
        left += image.data.shape[1] + GAP
        seg.image_combo.value = image
        seg.runner.run_button.click()
        wait_for(seg.runner)
        emb.image_combo.value = image
        emb.labels_combo.value = viewer.layers[f"{key} labels"]
        emb.runner.run_button.click()
        wait_for(emb.runner)
        if "failed" in emb.runner.status.text().lower():
            raise SystemExit(emb.runner.status.text())
        images.append(image)
    viewer.window.remove_dock_widget(seg_dock)
    emb.opacity.value = 0.85
    for layer in viewer.layers:
        if layer.name.endswith(" labels"):
            layer.visible = False
    for image in images:
        height, width = image.data.shape[:2]
        camera = camera_of(viewer)
        camera.center = (height / 2, image.translate[1] + width / 2)
        camera.zoom = 1.6 * 640 / width
        settle(viewer, 2.0)
        out = IMAGES / f"overlay_{image.name}.png"
        viewer.screenshot(str(out), canvas_only=False)
        print(f"wrote {out}")
    print(emb.legend.text())


if __name__ == "__main__":
    main()
