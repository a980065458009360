"""Walk-through of issue #27 item 8: offline, the embedding dock points at its own buttons."""

from __future__ import annotations

import re

from huggingface_hub import constants as hf_constants
from qtpy.QtCore import Qt

from napari_reddino.embed.backbones import DEFAULT_BACKBONE, load_backbone
from napari_reddino.segment import dispatch
from napari_reddino.synthetic import smear as synthetic


def _open_dock(viewer, qtbot):
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Embed smear (RedDino)")
    # the dock may find its backbone list in the background: wait for it as a user would
    qtbot.waitUntil(lambda: not getattr(widget, "backbones_loading", False), timeout=60_000)
    return widget


def test_offline_hub_backbone_error_points_at_browse_folder(
    make_napari_viewer, qtbot, wait_idle, error_messages, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((196, 224), seed=3, name="smear")
    result = dispatch.segment(smear.image, "classical", image_name="smear", subject="s1")
    viewer.add_image(smear.image, name="smear", metadata=dict(smear.metadata))
    viewer.add_labels(result.labels, name="smear labels", features=result.features)
    widget = _open_dock(viewer, qtbot)
    widget.backbone.value = "reddino-small"  # a hub model that is not in the (empty) cache
    widget.device.value = "cpu"
    qtbot.mouseClick(widget.runner.run_button, Qt.MouseButton.LeftButton)
    wait_idle(widget.runner)

    [message] = error_messages()
    assert "Browse folder..." in message and "load_backbone(" not in message
    assert "could not download reddino-small" in message and "offline" in message
    assert str(tmp_path / "hf-cache") in message  # where to put the weights by hand
    assert "Browse folder" in widget.runner.status.text()
    assert widget.browse_folder.text == "Browse folder..."  # the button the message names
    # scripts keep the Python hint
    try:
        load_backbone("reddino-small", device="cpu")
    except FileNotFoundError as err:
        assert "load_backbone('local-dir:" in str(err)
    else:
        raise AssertionError("offline load of an uncached hub model must fail")


def test_bundled_model_info_says_what_it_is_and_how_good(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    widget = _open_dock(viewer, qtbot)
    widget.backbone.value = DEFAULT_BACKBONE
    info = " ".join(widget.backbone_info.value.split())
    assert "ViT" in info and "192-d" in info and "6 blocks" in info
    params = float(re.search(r"([\d.]+) M parameters", info).group(1))
    assert 2.0 < params < 4.0  # the README's 2.8 M, counted from the weights file's header
    assert "Chula" in info and "BCCD" in info  # trained on what
    assert re.search(r"weighted F1 7\d\.\d % linear probe", info)  # its measured dev score
