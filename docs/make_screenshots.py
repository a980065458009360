"""Regenerate the user-guide screenshots of the segmentation and embedding docks.

Run under a display (or Xvfb), from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py [--backbone NAME]

It opens the "Synthetic smear" sample, runs each dock exactly as a user would (values set,
Run clicked, worker awaited) and saves ``viewer.screenshot(canvas_only=False)`` into
``docs/images/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

IMAGES = Path(__file__).parent / "images"


def wait_for(runner, timeout_s: float = 600.0) -> None:
    """Process Qt events until the dock's worker finished (its result is then on screen)."""
    app = QApplication.instance()
    start = time.monotonic()
    while runner.is_running:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"worker still running after {timeout_s} s")
        app.processEvents()
        time.sleep(0.02)
    app.processEvents()


def settle(viewer, seconds: float = 1.0) -> None:
    """Let docks lay out and the canvas redraw before a screenshot."""
    app = QApplication.instance()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.02)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="registry name, local-dir:... or folder")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)

    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-reddino", "synthetic_smear")
    image = next(layer for layer in viewer.layers if isinstance(layer, napari.layers.Image))
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera  # napari >= 0.9

    _dock, seg = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    seg.image_combo.value = image
    seg.runner.run_button.click()
    wait_for(seg.runner)
    labels = viewer.layers[f"{image.name} labels"]
    labels.contour = 2
    for layer in viewer.layers:  # the sample's truth would hide what the dock found
        layer.visible = not layer.metadata.get("truth", False)
    viewer.reset_view()
    camera.zoom *= 1.6
    settle(viewer)
    viewer.screenshot(str(IMAGES / "segmentation_dock.png"), canvas_only=False)

    _dock, emb = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    if args.backbone:
        emb.set_backbone_source(args.backbone)
    emb.device.value = args.device
    emb.image_combo.value = image
    emb.labels_combo.value = labels
    emb.foreground_only.value = True
    emb.opacity.value = 0.7
    emb.runner.run_button.click()
    wait_for(emb.runner)
    if emb.runner.status.text().lower().find("failed") >= 0:
        raise SystemExit(emb.runner.status.text())
    labels.visible = False
    camera.zoom *= 1.5  # a closer look: cells and their overlay colours
    settle(viewer)
    viewer.screenshot(str(IMAGES / "embedding_overlay.png"), canvas_only=False)
    print(f"wrote {IMAGES / 'segmentation_dock.png'} and {IMAGES / 'embedding_overlay.png'}")
    viewer.close()


if __name__ == "__main__":
    main()
