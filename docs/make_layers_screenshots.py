"""Screenshots of #27 item 5: two docks in a 1280 x 1024 window, and 20 smears with the Smears
dock.

Run under a display (or Xvfb), from the repository root::

    xvfb-run -a -s "-screen 0 1600x1150x24" python docs/make_layers_screenshots.py

Part 1 adds three synthetic smears, segments and embeds them through their docks, maps them in
the explorer and opens the labeling dock beside it, in a 1280 x 1024 window
(``two_docks_1280.png``). Part 2 opens 20 synthetic smears side by side with their truth, opens
the Smears dock and hides five smears with their row's box (``layers_20_smears.png``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import napari
from qtpy.QtCore import Qt

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.plugin.reader import side_by_side
from napari_reddino.plugin.samples import smear_layers
from napari_reddino.synthetic.smear import synthetic_dataset

sys.path.insert(0, str(Path(__file__).parent))
from make_screenshots import IMAGES, segment_and_embed, settle, wait_for

PLUGIN = "napari-reddino"


def _add_smears(viewer, n_subjects: int, per_subject: int, shape: tuple[int, int]) -> None:
    groups = [smear_layers(smear) for smear in synthetic_dataset(
        n_subjects=n_subjects, images_per_subject=per_subject, shape=shape, seed=0)]
    for data, kwargs, kind in side_by_side(groups):
        getattr(viewer, f"add_{kind}")(data, **kwargs)


def two_docks(args) -> None:
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1280, 1024)
    keep_triton_away_from_mesa_llvm()
    _add_smears(viewer, 3, 1, (384, 384))
    segment_and_embed(viewer, backbone=args.backbone, device=args.device)
    for layer in viewer.layers:
        layer.visible = not layer.metadata.get("truth", False)
    _d, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, "Cell explorer (UMAP)")
    viewer.window.add_plugin_dock_widget(PLUGIN, "Label & propagate")
    explorer.project_runner.run_button.click()
    wait_for(explorer.project_runner)
    explorer.color_column.setCurrentText("subject")
    settle(viewer, 0.5)
    viewer.window.resize(1280, 1024)  # the segmentation and embedding docks had grown it
    viewer.reset_view()
    settle(viewer, 2.0)
    viewer.screenshot(str(IMAGES / "two_docks_1280.png"), canvas_only=False)
    print(f"wrote {IMAGES / 'two_docks_1280.png'}: explorer status "
          f"{explorer.project_runner.status.text()!r}, space {explorer.space.currentText()!r}, "
          f"plot {explorer.scatter.native.visibleRegion().boundingRect()}")
    viewer.close()


def twenty_smears() -> None:
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1600, 1150)
    keep_triton_away_from_mesa_llvm()
    _add_smears(viewer, 4, 5, (256, 256))
    _d, smears = viewer.window.add_plugin_dock_widget(PLUGIN, "Smears (show / hide)")
    settle(viewer, 1.0)
    for row in (1, 4, 6, 11, 17):  # the user unticks five smears
        smears.list.item(row).setCheckState(Qt.CheckState.Unchecked)
    viewer.reset_view()
    settle(viewer, 2.0)
    viewer.screenshot(str(IMAGES / "layers_20_smears.png"), canvas_only=False)
    print(f"wrote {IMAGES / 'layers_20_smears.png'}: {smears.summary.text()}")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="registry name, local-dir:... or folder")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--part", choices=("all", "docks", "smears"), default="all")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    if args.part in ("all", "smears"):
        twenty_smears()
    if args.part in ("all", "docks"):
        two_docks(args)


if __name__ == "__main__":
    main()
