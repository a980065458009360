"""#25: the explorer says in words what sets a selection apart (Wilcoxon rank-sum per feature)."""

from __future__ import annotations

import numpy as np

from napari_reddino import names as nm
from napari_reddino.io.cell_table import CellEmbeddings
from napari_reddino.morphology.features import add_morphology
from napari_reddino.plugin import layers
from napari_reddino.plugin.session import session_for
from napari_reddino.segment.dispatch import segment
from napari_reddino.synthetic import smear as synthetic


def test_selecting_the_largest_cells_reads_larger(make_napari_viewer):
    viewer = make_napari_viewer()
    smear = synthetic.synthetic_smear((480, 480), seed=3, name="s")
    result = segment(smear.image, image_name="s", subject="s1")
    table = add_morphology(result.features, result.labels, smear.image)
    vectors = np.random.default_rng(0).normal(size=(len(table), 8)).astype(np.float32)
    cells = CellEmbeddings(vectors, np.full(len(table), "s"), table[nm.LABEL], "random", "none")
    viewer.add_image(smear.image, name="s")
    data, kwargs, _ = layers.labels_layer_data(result.labels, table, cells, image_name="s",
                                               image_layer="s")
    viewer.add_labels(data, **kwargs)
    explorer = viewer.window.add_plugin_dock_widget("napari-reddino",
                                                    "Cell explorer (UMAP)")[1]
    session = session_for(viewer)
    gathered = session.layer_cells.table
    used = session.used_mask()
    assert used.sum() >= 20
    largest = gathered[used].sort_values("morph_area").index[-8:].to_numpy()
    session.select(largest)
    assert explorer.selection_label.text() == "Selected: 8"
    text = explorer.selection_words.text()
    assert text.startswith("Selected cells: ") and "larger" in text, text
    session.select(largest[:2])  # too few to compare: the count alone
    assert explorer.selection_label.text() == "Selected: 2"
    assert explorer.selection_words.text() == ""
