"""Screenshot of the embedding dock's cell-resolution PCA overlay on a real smear
(docs/images/embedding_overlay_cells.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_overlay_screenshot.py [SMEAR]

Opens a real smear (default: the bundled Chula thalassemia smear, MIT), segments it with the
segmentation dock, then runs the embedding dock as a user would with its defaults (bundled
backbone, overlay detail "cell", PCA fitted on the cells only), hides the labels and zooms on
the center so single cells fill the frame.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari

sys.path.insert(0, str(Path(__file__).parent))
from make_screenshots import IMAGES, settle, wait_for

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.widgets._linking import camera_of

SMEAR = Path(__file__).parents[1] / "src" / "napari_reddino" / "data" / "chula_thalassemia.jpg"


def main(argv: list[str]) -> None:
    smear = Path(argv[0]) if argv else SMEAR
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1500, 950)
    keep_triton_away_from_mesa_llvm()  # the docks were imported above, before the canvas
    image = viewer.open(str(smear), layer_type="image")[0]
    _d, seg = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    seg.image_combo.value = image
    seg.runner.run_button.click()
    wait_for(seg.runner)
    labels = viewer.layers[f"{image.name} labels"]
    _d, emb = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    emb.image_combo.value = image
    emb.labels_combo.value = labels
    emb.opacity.value = 0.85
    emb.runner.run_button.click()
    wait_for(emb.runner)
    if "failed" in emb.runner.status.text().lower():
        raise SystemExit(emb.runner.status.text())
    labels.visible = False
    viewer.reset_view()
    camera_of(viewer).zoom *= 2.5
    settle(viewer, 2.0)
    out = IMAGES / "embedding_overlay_cells.png"
    viewer.screenshot(str(out), canvas_only=False)
    print(f"wrote {out}: {smear.name}, backbone {emb.backbone.value}, "
          f"detail {emb.overlay_detail.value}, cells only {emb.foreground_only.value}")


if __name__ == "__main__":
    main(sys.argv[1:])
