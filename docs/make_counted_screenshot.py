"""Regenerate ``docs/images/counted_cells.png``: what counts, and what does not, on a smear.

Run under a display (or Xvfb), from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_counted_screenshot.py

Opens the "Synthetic smear" sample, segments and embeds it through the docks, then opens the
labeling dock: the objects that do not count (cut by the border, white cells, platelets) are
greyed on the smear, the dock says "N of M objects counted", and the status bar gives the
reason of the object under the cursor (a white cell's when the sample has one).
"""

from __future__ import annotations

import napari
import numpy as np
from make_screenshots import IMAGES, segment_and_embed, settle

from napari_reddino import names as nm
from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.widgets._linking import camera_of


def main() -> None:
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1500, 950)
    keep_triton_away_from_mesa_llvm()
    viewer.open_sample("napari-reddino", "synthetic_smear")
    for layer in viewer.layers:
        layer.visible = not layer.metadata.get("truth", False)
    image = next(layer for layer in viewer.layers if isinstance(layer, napari.layers.Image))
    [labels] = segment_and_embed(viewer, [image])
    _d, labeling = viewer.window.add_plugin_dock_widget("napari-reddino", "Label & propagate")
    labeling.update_counts()

    features = labels.features
    reasons = features[nm.NOT_COUNTED_REASON].astype(str)
    preferred = [r for r in ("white cell", "platelet") if (reasons == r).any()]
    hovered = features[reasons == preferred[0]] if preferred else features[reasons != ""]
    y, x = hovered[["centroid_y", "centroid_x"]].to_numpy(float)[0]
    viewer.reset_view()
    camera = camera_of(viewer)  # closer, around the hovered object: greyed ones read at a glance
    camera.center = (y, x + 0.15 * labels.data.shape[1])
    camera.zoom *= 1.8
    viewer.layers.selection.active = labels  # napari's status bar reads the active layer
    viewer.cursor.position = (y, x)
    settle(viewer, 2.0)
    path = IMAGES / "counted_cells.png"
    viewer.screenshot(str(path), canvas_only=False)
    print(f"wrote {path}: {labeling.counted.text()}; hovered a {reasons[hovered.index[0]]!r} "
          f"object at ({y:.0f}, {x:.0f}); {int(np.sum(reasons != ''))} greyed")
    viewer.close()


if __name__ == "__main__":
    main()
