"""``napari-reddino demo``: the README's main job.

With a display it opens napari on the bundled real sample smear (Chula RBC-12, see
``napari_reddino/data``) with the plugin's four working docks (the Smears dock is one click
away) and segmentation + embedding already run,
so the first thing a user sees is a result on real cells. Headless (or
``--headless``) it writes synthetic smears of three subjects to a folder and runs the whole batch
pipeline on them, ending with the HTML report.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import pandas as pd

from napari_reddino.defaults import DEFAULTS
from napari_reddino.names import IMAGE, META_METHOD, SUBJECT

PLUGIN = "napari-reddino"
DOCKS = ("Segment cells", "Embed smear (RedDino)", "Cell explorer (UMAP)", "Label & propagate")
SAMPLE = "real_smear"  # a real Chula RBC-12 smear (napari_reddino/data), not a synthetic one


def has_display() -> bool:
    """True where a window can open (X11/Wayland on Linux; always on macOS and Windows)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def write_demo_smears(
    folder: Path, *, n_subjects: int = 3, images_per_subject: int = 2,
    shape: tuple[int, int] = (512, 512), seed: int = 0,
) -> tuple[list[Path], Path]:
    """Synthetic smears as PNG files plus an ``image,subject`` CSV; returns (files, csv)."""
    import imageio.v3 as iio

    from napari_reddino.synthetic.smear import synthetic_dataset

    folder.mkdir(parents=True, exist_ok=True)
    smears = synthetic_dataset(n_subjects=n_subjects, images_per_subject=images_per_subject,
                               shape=shape, seed=seed)
    files, rows = [], []
    for smear in smears:
        name = f"{smear.metadata[IMAGE]}.png"
        path = folder / name
        iio.imwrite(path, smear.image)
        files.append(path)
        rows.append({IMAGE: name, SUBJECT: smear.metadata[SUBJECT]})
    mapping = folder / "subjects.csv"
    pd.DataFrame(rows).to_csv(mapping, index=False)
    return files, mapping


def run_headless_demo(out_dir: Path, *, backbone: str | None, workers: int,
                      quiet: bool = False) -> int:
    """Synthetic smears -> ``run`` pipeline -> report under ``out_dir``."""
    from napari_reddino.cli.commands import run_pipeline
    from napari_reddino.cli.console import say
    from napari_reddino.embed.backbones import DEFAULT_BACKBONE
    from napari_reddino.runs.pipeline import PipelineConfig, read_subject_map

    images, mapping = write_demo_smears(out_dir / "input")
    say(f"demo: {len(images)} synthetic smears of 3 subjects in {out_dir / 'input'}")
    config = PipelineConfig(backbone=backbone or DEFAULT_BACKBONE)
    return run_pipeline(images, out_dir, config, read_subject_map(mapping, images),
                        workers=workers, quiet=quiet)


def populate_viewer(viewer, *, backbone: str | None = None, pooling: str = DEFAULTS.pooling,
                    quiet: bool = True) -> dict:
    """Open the sample smear in ``viewer``, segment + embed it, add the plugin's docks.

    Layers follow the docks' conventions: ``"<image> labels"`` (features + embeddings in
    metadata) and ``"<image> RedDino PCA"`` (the patch-token overlay). Returns the added layers.
    """
    from napari_reddino import widgets  # noqa: F401  (the docks' Triton guard, before torch loads below)
    from napari_reddino.cli.console import drive
    from napari_reddino.embed.backbones import DEFAULT_BACKBONE
    from napari_reddino.plugin.layers import add_layers, labels_layer_data, overlay_layer_data
    from napari_reddino.runs.pipeline import cached_backbone, iter_process_smear

    layers = viewer.open_sample(PLUGIN, SAMPLE)
    image_layer = next(la for la in layers if la.__class__.__name__ == "Image")
    for layer in layers:  # the sample's truth layers would hide the result
        if layer is not image_layer:
            layer.visible = False
    name = str(image_layer.metadata.get(IMAGE) or image_layer.name)
    subject = str(image_layer.metadata.get(SUBJECT) or "unknown")
    model = cached_backbone(backbone or DEFAULT_BACKBONE)
    result = drive(iter_process_smear(image_layer.data, model, image_name=name, subject=subject,
                                      pooling=pooling), "demo", quiet=quiet)
    placement = {"scale": image_layer.scale[-2:], "translate": image_layer.translate[-2:]}
    labels, overlay = add_layers(viewer, [
        labels_layer_data(result.labels, result.table, result.embeddings, image_name=name,
                          image_layer=image_layer.name, subject=subject,
                          metadata={META_METHOD: "classical"}, **placement),
        overlay_layer_data(result.grid, model.patch_size, image_layer=image_layer.name,
                           labels=result.labels, backbone=model.name, **placement),
    ])
    docks = {}
    for index, dock in enumerate(DOCKS):  # one tab per dock: each gets the full height
        docks[dock] = viewer.window.add_plugin_dock_widget(PLUGIN, dock, tabify=index > 0)
    docks["Cell explorer (UMAP)"][0].raise_()  # the next step: map the embedded cells
    viewer.layers.selection.active = labels
    return {"image": image_layer, "labels": labels, "overlay": overlay, "docks": docks}


def cmd_demo(args: argparse.Namespace) -> int:
    out_dir = Path(args.out)
    if args.headless or not has_display():
        if not args.headless:
            from napari_reddino.cli.console import say

            say("demo: no display found (DISPLAY/WAYLAND_DISPLAY unset), running headless")
        return run_headless_demo(out_dir, backbone=args.backbone, workers=args.workers,
                                 quiet=args.quiet)
    from napari_reddino.embed.backbones import DEFAULT_BACKBONE
    from napari_reddino.runs.pipeline import cached_backbone

    # torch (and triton under it) must load before Qt's OpenGL libraries: the other order
    # segfaults on some Linux setups, so the model is loaded before the first window exists
    cached_backbone(args.backbone or DEFAULT_BACKBONE)
    import napari

    viewer = napari.Viewer(title="napari-reddino demo", show=False)
    populate_viewer(viewer, backbone=args.backbone, quiet=args.quiet)
    viewer.window.show()
    napari.run()
    return 0
