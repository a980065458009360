"""The "Segment cells" dock driven as a user would: pick a layer, set values, click Run."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels
from qtpy.QtCore import Qt
from skimage.segmentation import clear_border

from napari_reddino.synthetic import smear as synthetic
from napari_reddino.widgets.segmentation import SegmentationWidget

CELL_COLUMNS = {
    "label",
    "image",
    "subject",
    "centroid_y",
    "centroid_x",
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "mean_r",
    "mean_g",
    "mean_b",
}


def _click(qtbot, button) -> None:
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def _dock(viewer) -> SegmentationWidget:
    """Open the dock the way a user does: Plugins > RedDino > Segment cells."""
    _dock_widget, widget = viewer.window.add_plugin_dock_widget("napari-reddino", "Segment cells")
    return widget


def _inner_cell_count(truth_labels: np.ndarray, truth_table) -> int:
    """Truth: cells (not platelets) that do not touch the image border."""
    inner = np.unique(clear_border(truth_labels))
    inner = inner[inner > 0]
    classes = truth_table.set_index("label").loc[inner, "true_class"]
    return int((classes != "platelet").sum())


def test_plugin_menu_opens_dock_and_segments_the_sample(make_napari_viewer, qtbot, wait_idle):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-reddino", "synthetic_smear")
    image = next(layer for layer in viewer.layers if isinstance(layer, Image))
    widget = _dock(viewer)
    assert isinstance(widget, SegmentationWidget)
    assert widget.image_combo.value is image
    assert widget.subject.value == image.metadata["subject"]  # default from layer metadata

    _click(qtbot, widget.runner.run_button)
    assert not widget.runner.run_button.isEnabled()  # disabled while running
    wait_idle(widget.runner)

    labels = viewer.layers[f"{image.name} labels"]
    assert isinstance(labels, Labels)
    assert labels.data.shape == image.data.shape[:2]
    assert np.issubdtype(labels.data.dtype, np.integer)
    features = labels.features
    assert set(features.columns) >= CELL_COLUMNS
    found = np.unique(labels.data)
    assert sorted(features["label"]) == sorted(found[found > 0])
    assert set(features["subject"]) == {image.metadata["subject"]}
    assert labels.metadata["method"] == "classical"
    assert labels.metadata["subject"] == image.metadata["subject"]
    assert widget.runner.run_button.isEnabled()
    assert widget.runner.status.text() == "Segmentation: done"
    assert widget.runner.activity is None  # its task in napari's activity dock is closed

    # hovering a cell shows its own row (napari keys Labels features by the 'index' column)
    inside = [
        row
        for row in features.itertuples()
        if labels.data[round(row.centroid_y), round(row.centroid_x)] == row.label
    ]
    cell = inside[len(inside) // 2]
    status = labels.get_status((cell.centroid_y, cell.centroid_x), world=True)["value"]
    assert status.startswith(f"{cell.label}; label: {cell.label},")

    truth = viewer.layers[f"{image.name} truth"]  # the sample ships its instance truth
    expected = _inner_cell_count(truth.data, truth.features)
    inner = features[~features["touches_border"]]  # border cells are kept, flagged
    assert abs(len(inner) - expected) <= 0.2 * expected
    assert features["touches_border"].any()


def test_rerun_with_parameters_replaces_the_labels_layer(make_napari_viewer, qtbot, wait_idle):
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((256, 256), seed=3)
    image = viewer.add_image(smear.image, name="small", metadata=dict(smear.metadata),
                             scale=(0.5, 0.5), translate=(10.0, -4.0))  # a pixel size in µm
    widget = _dock(viewer)
    widget.exclude_border.value = False
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    labels = viewer.layers["small labels"]
    first = len(labels.features)
    # the layer contract of layers.py: over the image, napari's 'index' first, keyed by image
    np.testing.assert_array_equal(labels.scale, image.scale)
    np.testing.assert_array_equal(labels.translate, image.translate)
    assert list(labels.features.columns[:2]) == ["index", "label"]
    np.testing.assert_array_equal(labels.features["index"], labels.features["label"])
    assert labels.metadata["image_layer"] == "small" and labels.metadata["method"] == "classical"

    widget.min_area.value = 10**6  # nothing is that large: every cell is filtered out
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    assert [layer.name for layer in viewer.layers] == [image.name, "small labels"]
    assert first > 5
    assert len(viewer.layers["small labels"].features) == 0
    assert viewer.layers["small labels"].metadata["params"]["min_area"] == 10**6


def test_cancel_stops_the_run_and_adds_nothing(make_napari_viewer, qtbot, wait_idle):
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((1024, 1024), seed=0)
    viewer.add_image(smear.image, name="smear")
    widget = _dock(viewer)
    outcomes = []
    widget.runner.finished.connect(outcomes.append)
    _click(qtbot, widget.runner.run_button)
    assert widget.runner.cancel_button.isEnabled()
    _click(qtbot, widget.runner.cancel_button)
    wait_idle(widget.runner)
    assert outcomes == ["cancelled"]
    assert "smear labels" not in viewer.layers
    assert widget.runner.status.text() == "Cancelled"
    assert widget.runner.run_button.isEnabled()
    assert not widget.runner.cancel_button.isEnabled()


def test_image_picker_follows_the_layer_list(make_napari_viewer):
    """napari calls the dock's reset_choices on every layer change: new, renamed and removed
    images show in the picker, Labels layers never do."""
    viewer = make_napari_viewer()
    widget = _dock(viewer)
    assert widget.image_combo.choices == ()
    first = viewer.add_image(np.zeros((16, 16)), name="first")
    viewer.add_labels(np.zeros((16, 16), np.int32), name="cells")
    second = viewer.add_image(np.ones((16, 16)), name="second")
    assert widget.image_combo.choices == (first, second)
    first.name = "renamed"
    assert [widget.image_combo.get_choice(n) for n in ("renamed", "second")] == [first, second]
    viewer.layers.remove(second)
    assert widget.image_combo.choices == (first,)
    assert widget.image_combo.value is first


def test_no_image_layer_gives_a_notification(make_napari_viewer, qtbot, error_messages):
    viewer = make_napari_viewer()
    viewer.add_labels(np.zeros((64, 64), np.int32), name="not an image")
    widget = _dock(viewer)
    assert widget.image_combo.value is None  # Labels layers are not offered
    _click(qtbot, widget.runner.run_button)
    assert not widget.runner.is_running
    assert error_messages() == [
        "Segmentation failed: choose an image layer (open an image or a sample)"
    ]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (np.zeros((5, 32, 32), np.float32), "expected a 2D gray or (H, W, 3|4) color image"),
        (np.full((3, 3), 7, np.uint8), "a smear needs at least"),
    ],
)
def test_bad_image_gives_a_notification(
    make_napari_viewer, qtbot, wait_idle, error_messages, data, reason
):
    viewer = make_napari_viewer()
    viewer.add_image(data, name="bad")
    widget = _dock(viewer)
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    messages = error_messages()
    assert len(messages) == 1
    assert messages[0].startswith("Segmentation failed: ")
    assert reason in messages[0]
    assert "Traceback" not in messages[0]
    assert "bad labels" not in viewer.layers


def test_cellpose_without_weights_names_the_missing_file(
    make_napari_viewer, qtbot, wait_idle, error_messages, tmp_path, monkeypatch
):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((128, 128), seed=1)
    viewer.add_image(smear.image, name="smear")
    widget = _dock(viewer)
    widget.method.value = "cellpose"
    assert widget.classical_box.native.isHidden()  # only the chosen method's parameters
    assert not widget.cellpose_box.native.isHidden()
    widget.diameter.value = 30
    widget.gpu.value = "off"
    assert widget.params() == {
        "exclude_border": False,
        "model": "cpsam",
        "diameter": 30,
        "flow_threshold": 0.4,
        "cellprob_threshold": 0.0,
        "gpu": False,
    }
    _click(qtbot, widget.runner.run_button)
    wait_idle(widget.runner)
    messages = error_messages()
    assert len(messages) == 1
    assert str(tmp_path / "cpsam") in messages[0]
    assert "smear labels" not in viewer.layers


def test_implausible_result_shows_a_warning(make_napari_viewer, qtbot, monkeypatch):
    """A smear whose cells cover little of its stain is reported, not passed off as done."""
    from napari.utils.notifications import NotificationSeverity, notification_manager

    from napari_reddino.segment import dispatch
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((256, 256), seed=3)
    image = viewer.add_image(smear.image, name="small")
    widget = _dock(viewer)
    start = len(notification_manager.records)
    result = dispatch.segment(smear.image)
    result.warning = "only 5 % of the stained area lies in the 1 red cells found"
    labels = widget._show_result(image, result, method="classical", subject="s", params={})
    shown = [str(n.message) for n in notification_manager.records[start:]
             if n.severity == NotificationSeverity.WARNING]
    assert any("only 5 %" in message and "small" in message for message in shown)
    assert labels.metadata["warning"] == result.warning
