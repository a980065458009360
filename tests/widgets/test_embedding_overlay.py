"""The embedding dock: opens at once, offers cached RedDino weights first (found after it
opens), and colours cells with one PCA over every open smear, with a legend in words."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import timm
import torch
from huggingface_hub import constants as hf_constants
from qtpy.QtCore import Qt
from timm.models import save_for_hf

from napari_reddino.defaults import DEFAULTS
from napari_reddino.embed.backbones import DEFAULT_BACKBONE
from napari_reddino.explore.cell_colours import MORE_WORDS
from napari_reddino.explore.markers import WORDS
from napari_reddino.segment import dispatch
from napari_reddino.segment.counted import add_counted
from napari_reddino.synthetic import smear as synthetic

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _click(qtbot, button) -> None:
    qtbot.mouseClick(getattr(button, "native", button), Qt.MouseButton.LeftButton)


def _hf_cache_with_reddino_small(cache) -> None:
    """A small timm ViT/14 saved under Snarcy/RedDino-small in huggingface_hub's cache layout."""
    repo = cache / "models--Snarcy--RedDino-small"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                              img_size=224, embed_dim=64, depth=1, num_heads=2)
    save_for_hf(model, str(repo / "snapshots" / COMMIT), safe_serialization=True)


def test_dock_offers_the_cached_reddino_first_and_downloads_with_size(
    make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    _hf_cache_with_reddino_small(tmp_path)
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    qtbot.waitUntil(lambda: not widget.backbones_loading, timeout=60_000)

    assert widget.backbone.value == "reddino-small"
    labels = [widget.backbone.native.itemText(i) for i in range(widget.backbone.native.count())]
    assert labels[0] == "reddino-small (in your Hugging Face cache)"
    assert labels[1] == f"{DEFAULT_BACKBONE} (bundled, offline)"
    assert "Hugging Face cache" in widget.backbone_info.value
    assert widget.download_button.native.isHidden()

    widget.backbone.value = "reddino-base"
    assert not widget.download_button.native.isHidden()
    assert widget.download_button.text == "Download reddino-base (~346 MB)"
    widget.backbone.value = DEFAULT_BACKBONE
    assert "bundled" in widget.backbone_info.value and widget.download_button.native.isHidden()


def _embedded(viewer, qtbot, wait_idle, widget, image, name) -> None:
    """Run the dock on ``image`` with its preselected ``"<name> labels"`` layer."""
    widget.image_combo.value = viewer.layers[name]
    assert widget.labels_combo.value is viewer.layers[f"{name} labels"]
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)


def _cell_colours(overlay, labels) -> dict[int, tuple]:
    """The one RGBA of each cell of the overlay (asserting it is one colour inside the cell)."""
    colours = {}
    for label in np.unique(labels[labels > 0]):
        inside = np.unique(overlay[labels == label], axis=0)
        assert len(inside) == 1, f"cell {label} has {len(inside)} colours"
        colours[int(label)] = tuple(inside[0])
    return colours


def test_cell_overlay_is_one_pca_over_every_open_smear_with_a_legend_in_words(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir
):
    viewer = make_napari_viewer()
    first = synthetic.synthetic_smear((196, 224), seed=3, name="a")
    other = synthetic.synthetic_smear((224, 196), seed=11, name="c")
    for name, smear in (("a", first), ("copy", first), ("c", other)):
        result = dispatch.segment(smear.image, "classical", image_name=name, subject=name)
        viewer.add_image(smear.image, name=name)
        viewer.add_labels(result.labels, name=f"{name} labels",
                          features=add_counted(result.features))  # as the segmentation dock
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    widget.set_backbone_source(f"local-dir:{tiny_backbone_dir}")
    widget.device.value = "cpu"
    assert widget.overlay_detail.value == 0  # the default overlay: one colour per cell
    assert widget.colour_by.value == DEFAULTS.space  # what the explorer compares cells in
    for name in ("a", "copy", "c"):
        _embedded(viewer, qtbot, wait_idle, widget, viewer.layers[name], name)
    _click(qtbot, widget.colour_button)

    labels = {n: np.asarray(viewer.layers[f"{n} labels"].data) for n in ("a", "copy", "c")}
    overlays = {n: np.asarray(viewer.layers[f"{n} RedDino PCA"].data) for n in labels}
    colours = {}
    for name, overlay in overlays.items():
        assert overlay.shape == (*labels[name].shape, 4)  # cell resolution, RGBA
        assert (overlay[labels[name] == 0, 3] == 0).all()  # background transparent
        counted = viewer.layers[f"{name} labels"].features.set_index("label")["counted"]
        alpha = overlay[..., 3]
        assert (alpha[np.isin(labels[name], counted.index[counted])] == 255).all()
        assert (alpha[np.isin(labels[name], counted.index[~counted])] == 89).all()  # faint
        assert counted.sum() >= 3 and (~counted).sum() >= 1  # both kinds are on each smear
        colours[name] = _cell_colours(overlay, labels[name])
    assert colours["a"] == colours["copy"]  # the same cell: the same colour on both smears
    assert len(set(colours["a"].values())) > len(colours["a"]) // 2  # cells do differ

    legend = widget.legend.text()
    for channel in ("red", "green", "blue"):
        assert f"<b>{channel}</b>: " in legend
    words = {w for pair in WORDS.values() for w in pair} | {
        w for pair in MORE_WORDS.values() for w in pair}
    assert any(word in legend for word in words) or "higher" in legend or "lower" in legend
    assert " r=" in legend  # the correlation behind each word

    # one PCA over the session: without smear c the same cells of a get other colours
    viewer.layers.remove("c labels")
    _click(qtbot, widget.colour_button)
    alone = _cell_colours(np.asarray(viewer.layers["a RedDino PCA"].data), labels["a"])
    assert alone != colours["a"]
    assert alone == _cell_colours(np.asarray(viewer.layers["copy RedDino PCA"].data),
                                  labels["copy"])


def test_patch_overlay_stays_available_at_half_patch_resolution(
    make_napari_viewer, qtbot, wait_idle, tiny_backbone_dir
):
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((196, 224), seed=3, name="smear")
    result = dispatch.segment(smear.image, "classical", image_name="smear", subject="s1")
    viewer.add_image(smear.image, name="smear", metadata=dict(smear.metadata))
    viewer.add_labels(result.labels, name="smear labels", features=result.features)
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    widget.set_backbone_source(f"local-dir:{tiny_backbone_dir}")
    widget.device.value = "cpu"
    widget.overlay_detail.value = 2
    assert widget.foreground_only.value
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    overlay = viewer.layers["smear RedDino PCA"]
    assert overlay.data.shape == (math.ceil(196 / 7), math.ceil(224 / 7), 3)
    np.testing.assert_allclose(overlay.scale, (7.0, 7.0))
    np.testing.assert_allclose(overlay.translate, (3.0, 3.0))
    assert str(overlay.interpolation2d) == "linear"
    background = overlay.data[result.labels[3::7, 3::7] == 0]
    assert background.max() == 0.0  # colors only on cells

    _click(qtbot, widget.colour_button)  # the cell colours replace the patch overlay
    overlay = viewer.layers["smear RedDino PCA"]
    assert overlay.data.shape == (196, 224, 4) and overlay.data.dtype == np.uint8
    np.testing.assert_allclose(overlay.scale, (1.0, 1.0))
    _cell_colours(np.asarray(overlay.data), result.labels)


OPEN_DOCK = """
import sys
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
_dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
print("at open:", sorted(m for m in ("torch", "timm", "sklearn") if m in sys.modules),
      widget.backbones_loading, widget.backbone_info.value, flush=True)
while widget.backbones_loading:
    QApplication.processEvents()
print("listed:", widget.backbone.value, widget.backbone.native.count(),
      "torch" in sys.modules, widget.backbone_info.value.replace(chr(10), " "))
viewer.close()
"""


def test_dock_opens_without_importing_torch_and_lists_backbones_after(tmp_path):
    """Opening the dock imports no torch, timm or scikit-learn (6-7 s that froze napari); a
    thread lists the backbones afterwards and the dock says so meanwhile."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", OPEN_DOCK], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "at open: [] True looking for backbones (loading torch and timm)..."
    assert lines[1].startswith(f"listed: {DEFAULT_BACKBONE} ")
    assert int(lines[1].split()[2]) > 3 and " True " in lines[1]  # the whole list, torch now
    assert "bundled" in lines[1] and "looking for backbones" not in lines[1]
