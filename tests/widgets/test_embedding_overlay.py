"""The embedding dock offers cached RedDino weights first and draws a cell-resolution overlay."""

from __future__ import annotations

import math

import numpy as np
import timm
import torch
from huggingface_hub import constants as hf_constants
from qtpy.QtCore import Qt
from timm.models import save_for_hf

from napari_reddino.embed.backbones import DEFAULT_BACKBONE
from napari_reddino.segment import dispatch
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
    make_napari_viewer, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    _hf_cache_with_reddino_small(tmp_path)
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")

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


def test_default_overlay_is_at_half_patch_resolution_and_smooth(
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
    assert widget.overlay_detail.value == 2 and widget.foreground_only.value
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)

    overlay = viewer.layers["smear RedDino PCA"]
    assert overlay.data.shape == (math.ceil(196 / 7), math.ceil(224 / 7), 3)
    np.testing.assert_allclose(overlay.scale, (7.0, 7.0))
    np.testing.assert_allclose(overlay.translate, (3.0, 3.0))
    assert str(overlay.interpolation2d) == "linear"
    background = overlay.data[result.labels[3::7, 3::7] == 0]
    assert background.max() == 0.0  # colors only on cells
