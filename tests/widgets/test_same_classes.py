"""With default settings ``rd.tl.propagate``, ``napari-reddino propagate RUN`` and the labeling
dock give the same classes to the same cells: all three read ``napari_reddino.defaults``
(space, k, centering, classifier) and make their matrix with ``explore.spaces``."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

import napari_reddino as rd
from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table, save_table
from napari_reddino.label.classes import DEFAULT_CLASS_SET

PLUGIN = "napari-reddino"
PER_CLUSTER = 3


def _manual_labels(table: pd.DataFrame) -> pd.Series:
    """A few cells of each of the run's clusters, named after a class of the default set."""
    picks = {}
    for cluster, rows in table.groupby(nm.CLUSTER).groups.items():
        if int(cluster) < 0:  # not counted (border, white cell...): labels there do not vote
            continue
        name = DEFAULT_CLASS_SET.names[int(cluster)]
        for row in list(rows)[:: max(1, len(rows) // PER_CLUSTER)][:PER_CLUSTER]:
            picks[(table.at[row, nm.IMAGE], int(table.at[row, nm.LABEL]))] = name
    return pd.Series(picks)


def _by_cell(table: pd.DataFrame) -> pd.Series:
    keys = zip(table[nm.IMAGE].astype(str), table[nm.LABEL].astype(int))
    classes = table[nm.CLASS].astype(object)
    classes = classes.where(classes.notna(), "(none)")  # objects that are not counted
    return pd.Series(classes.astype(str).to_numpy(), index=pd.MultiIndex.from_tuples(
        list(keys))).sort_index()


def test_tl_cli_and_dock_give_the_same_classes(make_napari_viewer, wait_idle, small_run,
                                               tmp_path):
    table = load_table(small_run / nm.CELLS_TABLE_FILE)
    manual = _manual_labels(table)
    assert manual.nunique() == table.loc[table[nm.CLUSTER] >= 0, nm.CLUSTER].nunique() >= 2
    keys = list(zip(table[nm.IMAGE].astype(str), table[nm.LABEL].astype(int)))
    classes = np.array([manual.get(key) for key in keys], dtype=object)

    # rd.tl: the run's AnnData with a few classes in .obs["class"], everything else default
    adata = rd.read_run(small_run)
    assert list(adata.obs_names) == [f"{i}:{lab}" for i, lab in keys]
    adata.obs[nm.CLASS] = pd.Categorical(classes)
    rd.tl.propagate(adata)
    by_tl = _by_cell(adata.obs)

    # the CLI: the same labels, manual, in the run's table; `propagate RUN` with no option
    cli_run = shutil.copytree(small_run, tmp_path / "cli")
    labeled = table.copy()
    labeled[nm.CLASS] = classes
    labeled[nm.CLASS_SOURCE] = np.where(pd.isna(classes), None, nm.MANUAL)
    save_table(labeled, cli_run / nm.CELLS_TABLE_FILE)
    assert main(["-q", "propagate", str(cli_run)]) == 0
    by_cli = _by_cell(load_table(cli_run / nm.CELLS_TABLE_FILE))

    # the dock: the run opened through the reader, the same cells labeled with the dock
    viewer = make_napari_viewer()
    viewer.open(str(shutil.copytree(small_run, tmp_path / "dock")), plugin=PLUGIN)
    _, labeling = viewer.window.add_plugin_dock_widget(PLUGIN, "Label & propagate")
    layer_cells = labeling.layer_cells
    assert layer_cells is not None and len(layer_cells) == len(table)
    for name in manual.unique():
        cells = manual[manual == name].index
        labeling.session.select(layer_cells.indices_for_keys([c[0] for c in cells],
                                                      [c[1] for c in cells]))
        labeling.classes.set_active(name)
        assert labeling.assign_selection()
    labeling.propagate_runner.run_button.click()
    wait_idle(labeling.propagate_runner)
    by_dock = _by_cell(labeling.layer_cells.public_table())

    assert list(by_tl.index) == list(by_cli.index) == list(by_dock.index)
    assert by_tl[by_tl != "(none)"].nunique() == manual.nunique()  # every class reached cells
    pd.testing.assert_series_equal(by_cli, by_tl)
    pd.testing.assert_series_equal(by_dock, by_tl)
