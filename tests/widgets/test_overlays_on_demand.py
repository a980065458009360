"""#27 item 5, overlays on demand: a run folder opens as one image + one cells layer per smear;
the class colours make a layer only on the smears that have labelled cells; the cell-colour
overlay and the patch-token PCA (from the grid the run kept) come when asked for."""

from __future__ import annotations

import numpy as np
import pandas as pd
from huggingface_hub import constants as hf_constants
from napari.layers import Image, Labels

from napari_reddino import names as nm
from napari_reddino.plugin import layers as contract
from napari_reddino.plugin.reader import patch_overlay_data
from napari_reddino.widgets.labeling import LabelingWidget

PLUGIN = "napari-reddino"


def _sizes(viewer) -> dict[str, int]:
    """How many layers each smear has in the layer list."""
    return {smear: len(group) for smear, group in contract.smear_groups(viewer.layers).items()}


def test_overlays_are_made_only_where_and_when_asked(make_napari_viewer, qtbot, small_run,
                                                     tmp_path, monkeypatch):
    viewer = make_napari_viewer()
    viewer.open(str(small_run), plugin=PLUGIN)  # labels stay in memory: the run is not changed
    cells = {la.metadata[nm.META_IMAGE_LAYER]: la for la in viewer.layers
             if isinstance(la, Labels)}
    assert len(cells) == 2
    assert _sizes(viewer) == dict.fromkeys(cells, 2)  # image + cells, no overlay yet
    assert len(viewer.layers) == 4

    # one cell labelled on one smear, class colours on: one class layer, on that smear only
    labeling = LabelingWidget(viewer)
    qtbot.addWidget(labeling)
    labeling.show_classes.setChecked(True)
    assert len(viewer.layers) == 4  # nothing labelled yet: nothing to colour
    first, second = sorted(cells)
    pooled = labeling.layer_cells
    assert pooled is not None and pd.isna(pooled.table.get(nm.CLASS, pd.Series([None]))).all()
    index = int(pooled.indices_for(cells[second], cells[second].features[nm.LABEL][:1])[0])
    labeling.session.select([index])
    labeling.classes.set_active(labeling.classes.class_set.names[0])
    assert labeling.assign_selection()
    assert _sizes(viewer) == {first: 2, second: 3}
    overlay = viewer.layers[f"{cells[second].name} classes"]
    label = int(cells[second].features[nm.LABEL].iloc[0])
    assert set(overlay.colormap.color_dict) - {None, 0} == {label}
    assert overlay.visible and f"{cells[first].name} classes" not in viewer.layers
    labeling.undo()  # no labelled cell left on that smear: its class layer goes
    assert _sizes(viewer) == {first: 2, second: 2}

    # asked for: the embedding dock's cell colours, one overlay per smear on its cells
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    _dock, embedding = viewer.window.add_plugin_dock_widget(PLUGIN, "Embed smear (RedDino)")
    qtbot.waitUntil(lambda: not embedding.backbones_loading, timeout=60_000)
    embedding.colour_button.native.click()
    assert _sizes(viewer) == {first: 3, second: 3}
    for name, labels in cells.items():
        colours = viewer.layers[contract.overlay_name(name)]
        assert isinstance(colours, Image) and colours.visible
        assert colours.data.shape[:2] == labels.data.shape
        inside = np.asarray(colours.data)[..., 3][np.asarray(labels.data) > 0]
        assert inside.min() > 0  # every cell painted

    # the patch-token PCA stays on disk: made from the run's grid, on its smear
    data, kwargs, kind = patch_overlay_data(cells[first].metadata, cells[first].scale,
                                            cells[first].translate)
    viewer.layers.remove(contract.overlay_name(first))
    patches = viewer.add_layer(Image(data, **kwargs))
    assert kind == "image" and patches.rgb and _sizes(viewer)[first] == 3
    assert patches in contract.smear_groups(viewer.layers)[first]
    np.testing.assert_allclose(patches.translate - cells[first].translate, (6.5, 6.5))
