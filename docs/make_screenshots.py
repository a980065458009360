"""Regenerate the user-guide screenshots of the working docks.

Run under a display (or Xvfb), from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshots.py [--backbone NAME]

Part 1 opens the "Synthetic smear" sample and runs the segmentation and embedding docks; part 2
opens "Synthetic smears, 3 subjects", segments and embeds every smear, then drives the explorer
(UMAP, k-means, color by subject, a rectangle selection linked to the smears, batch metrics)
and the labeling dock (5 cells per class labeled from the sample's truth, propagation, class
colors, counts). Every dock is driven as a user would (values set, Run clicked, worker
awaited); ``viewer.screenshot(canvas_only=False)`` goes into ``docs/images/``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from napari_reddino._triton_guard import keep_triton_away_from_mesa_llvm
from napari_reddino.widgets._linking import camera_of

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
    keep_triton_away_from_mesa_llvm()  # the docks were imported above, before the canvas
    viewer.open_sample("napari-reddino", "synthetic_smear")
    image = next(layer for layer in viewer.layers if isinstance(layer, napari.layers.Image))
    camera = camera_of(viewer)

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
    camera.zoom *= 1.5  # a closer look: cells and their overlay colors
    settle(viewer)
    viewer.screenshot(str(IMAGES / "embedding_overlay.png"), canvas_only=False)
    print(f"wrote {IMAGES / 'segmentation_dock.png'} and {IMAGES / 'embedding_overlay.png'}")
    viewer.close()
    explorer_and_labeling(args)


def segment_and_embed(viewer, images=None, *, backbone=None, device="auto") -> list:
    """Smears (default: every Image layer) through the segmentation and embedding docks, with
    no overlay; the docks are closed after (the next dock needs the room). Its labels layers."""
    _d, seg = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    _d, emb = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    if backbone:
        emb.set_backbone_source(backbone)
    emb.device.value = device
    emb.overlay.value = False
    if images is None:
        images = [layer for layer in viewer.layers if isinstance(layer, napari.layers.Image)]
    labels = []
    for image in images:
        seg.image_combo.value = image
        seg.runner.run_button.click()
        wait_for(seg.runner)
        layer = viewer.layers[f"{image.name} labels"]
        emb.image_combo.value = image
        emb.labels_combo.value = layer
        emb.runner.run_button.click()
        wait_for(emb.runner)
        labels.append(layer)
    for widget in (seg, emb):
        viewer.window.remove_dock_widget(widget)
    return labels


def _truth_class(viewer, layer) -> np.ndarray:
    """The sample's true class at each segmented cell's centroid (None where none)."""
    truth = viewer.layers[layer.name.replace(" labels", " truth")]
    table = truth.features.set_index("label")["true_class"]
    rows = layer.features[["centroid_y", "centroid_x"]].round().astype(int).to_numpy()
    ids = truth.data[rows[:, 0], rows[:, 1]]
    return np.array([table.get(i) if i else None for i in ids], dtype=object)


def explorer_and_labeling(args) -> None:
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1600, 1000)
    viewer.open_sample("napari-reddino", "synthetic_subjects")
    for layer in viewer.layers:
        layer.visible = not layer.metadata.get("truth", False)
    labels = segment_and_embed(viewer, backbone=args.backbone, device=args.device)
    explorer_dock, explorer = viewer.window.add_plugin_dock_widget("napari-reddino",
                                                                   "Cell explorer (UMAP)")
    explorer.method.setCurrentText("UMAP")
    explorer.project_runner.run_button.click()
    wait_for(explorer.project_runner)
    explorer.n_clusters.setValue(9)
    explorer.cluster_runner.run_button.click()
    wait_for(explorer.cluster_runner)
    explorer.batch_runner.run_button.click()
    wait_for(explorer.batch_runner)
    explorer.color_column.setCurrentText("subject")
    table = explorer.layer_cells.table  # drag a rectangle around the first smear's biggest cluster
    first = table[table["image"] == labels[0].metadata["image"]]
    members = first[first["cluster"] == first["cluster"].mode()[0]][["umap_0", "umap_1"]]
    low, high = np.percentile(members.to_numpy(), [10, 90], axis=0)
    explorer.scatter.select_rectangle(tuple(low), tuple(high))
    for layer in labels[1:]:  # one smear on screen; the rings show on it
        layer.visible = False
        viewer.layers[layer.name.replace(" labels", "")].visible = False
    labels[0].contour = 1
    viewer.reset_view()
    settle(viewer, 2.0)
    viewer.screenshot(str(IMAGES / "explorer_linked.png"), canvas_only=False)

    explorer_dock.hide()  # room for the labeling dock; the explorer keeps linking
    _d, labeling = viewer.window.add_plugin_dock_widget("napari-reddino", "Label & propagate")
    truth = np.concatenate([_truth_class(viewer, layer) for layer in labels])
    rng = np.random.default_rng(0)
    for name in labeling.classes.class_set.names:
        rows = np.flatnonzero(truth == name)
        if rows.size:
            labeling.session.select(rng.choice(rows, min(5, rows.size), replace=False))
            labeling.classes.set_active(name)
            labeling.assign_selection()
    labeling.propagate_runner.run_button.click()
    wait_for(labeling.propagate_runner)
    labeling.show_classes.setChecked(True)
    labeling.update_counts()
    labeling.next_uncertain()
    settle(viewer, 2.0)
    viewer.screenshot(str(IMAGES / "labeling.png"), canvas_only=False)
    print(f"wrote {IMAGES / 'explorer_linked.png'} and {IMAGES / 'labeling.png'}")
    viewer.close()


if __name__ == "__main__":
    main()
