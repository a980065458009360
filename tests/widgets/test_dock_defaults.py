"""The docks start at the table's values (``napari_reddino.defaults``) and offer the choices
``names`` declares; the explorer's "Compare cells in" shows the space of the map on screen."""

from __future__ import annotations

import json
import shutil

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.analysis import Settings
from napari_reddino.widgets import _explorer_panels as panels
from napari_reddino.widgets import embedding

from ._cell_layers import add_smears

PLUGIN = "napari-reddino"


def _items(box) -> list[str]:
    return [box.itemText(i) for i in range(box.count())]


def test_every_dock_starts_at_the_table_s_values(make_napari_viewer):
    viewer = make_napari_viewer()
    add = viewer.window.add_plugin_dock_widget
    _, seg = add(PLUGIN, "Segment cells")
    _, emb = add(PLUGIN, "Embed smear (RedDino)", tabify=True)
    _, explorer = add(PLUGIN, "Cell explorer (UMAP)", tabify=True)
    _, labeling = add(PLUGIN, "Label & propagate", tabify=True)

    assert seg.method.value == DEFAULTS.segment_method
    assert tuple(seg.method.choices) == nm.SEGMENT_METHODS
    assert seg.exclude_border.value == DEFAULTS.exclude_border
    assert seg.params() == {"min_area": None, "max_area": None,  # 0 = the core's own choice
                            "exclude_border": DEFAULTS.exclude_border}
    assert seg.cp_model.value == DEFAULTS.cellpose_model
    assert seg.flow_threshold.value == DEFAULTS.flow_threshold
    assert seg.cellprob_threshold.value == DEFAULTS.cellprob_threshold

    assert emb.device.value == DEFAULTS.device and emb.pooling.value == DEFAULTS.pooling
    assert tuple(embedding.POOLINGS) == nm.POOLINGS and tuple(embedding.DEVICES) == nm.DEVICES

    assert panels.PROJECTIONS[explorer.method.currentText()] == DEFAULTS.map_method
    assert [panels.PROJECTIONS[t] for t in _items(explorer.method)] == list(nm.MAP_METHODS)
    assert panels.CLUSTERINGS[explorer.cluster_method.currentText()] == DEFAULTS.cluster_method
    assert sorted(panels.CLUSTERINGS[t] for t in _items(explorer.cluster_method)) == sorted(
        nm.CLUSTER_METHODS)
    assert explorer.n_clusters.value() == DEFAULTS.n_clusters
    assert explorer.n_neighbors.value() == DEFAULTS.n_neighbors
    assert explorer.settings() == Settings()  # the CLI's settings, graph and all
    assert explorer.space.currentText() == DEFAULTS.space  # no cells yet: the table's space
    assert _items(explorer.space) == list(nm.FEATURE_SPACES)

    assert labeling.k.value() == DEFAULTS.propagation_k
    assert labeling.center.isChecked() == DEFAULTS.center
    assert labeling.spreading.isChecked() == DEFAULTS.spreading
    panel = labeling.suggest_panel
    assert panel.space_name() == DEFAULTS.space
    assert panel.method_name() == DEFAULTS.propagation_method
    assert [panel.method.itemData(i) for i in range(panel.method.count())] == list(
        nm.PROPAGATION_METHODS)
    assert panel.count.value() == DEFAULTS.n_suggestions


def test_cells_without_morphology_fall_back_to_the_embedding(make_napari_viewer, qtbot):
    from napari_reddino.widgets.explorer import ExplorerWidget

    viewer = make_napari_viewer()
    add_smears(viewer)  # region features only: no morph_* columns
    explorer = ExplorerWidget(viewer)
    qtbot.addWidget(explorer)
    assert explorer.layer_cells is not None
    assert explorer.space.currentText() == nm.EMBEDDING


def test_explorer_shows_the_space_the_run_s_map_was_made_in(make_napari_viewer, small_run,
                                                             tmp_path):
    run = shutil.copytree(small_run, tmp_path / "run")
    summary = json.loads((run / nm.SUMMARY_FILE).read_text())
    assert summary["feature_space"] == DEFAULTS.space  # `project` used the table's space
    summary["feature_space"] = nm.BOTH  # as if made with `project --features both`
    (run / nm.SUMMARY_FILE).write_text(json.dumps(summary))
    viewer = make_napari_viewer()
    viewer.open(str(run), plugin=PLUGIN)
    _, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, "Cell explorer (UMAP)")
    assert explorer.layer_cells is not None
    assert set(nm.UMAP) <= set(explorer.layer_cells.table.columns)
    assert explorer.space.currentText() == nm.BOTH
