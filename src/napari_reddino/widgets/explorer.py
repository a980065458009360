"""Explorer dock: every cell of every embedded smear in one linked scatter plot.

Thin over the core: ``session.LayerCells`` gathers the Labels layers; :mod:`..explore.analysis`
maps the embeddings to 2-D (written back as ``umap_0``/``umap_1``), clusters them (``cluster``)
and measures subject mixing with the settings the command line uses, over one neighbor graph
found once per set of cells. Once it holds cells, the dock loads UMAP's cached kernels in a
background thread, so the first map does not wait for them. Selections flow both ways
through the viewer's :class:`~napari_reddino.plugin.session.SharedSession`, which the labeling
dock shares, with its "Counted cells only" switch: by default the map and the clusters are made
of counted cells only (a differential is about intact red cells), the other objects stay on
the smears, greyed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.layers import Labels
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QWidget,
)

from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore import projection
from napari_reddino.explore.analysis import Settings
from napari_reddino.explore.neighbors import EXACT_MAX
from napari_reddino.names import COUNTED, EMBEDDING_ROW, EMBEDDINGS_KEY, NAPARI_INDEX, UMAP
from napari_reddino.plugin.session import ORIGIN_COLUMNS, LayerCells, SessionError, session_for
from napari_reddino.widgets import _explorer_panels as panels
from napari_reddino.widgets import _linking
from napari_reddino.widgets._batch_panel import BatchPanel
from napari_reddino.widgets._coloring import color_by
from napari_reddino.widgets._corrections import follow_plugin_layers
from napari_reddino.widgets._counted import CountedSwitch, write_used
from napari_reddino.widgets._explorer_layout import build_layout
from napari_reddino.widgets._explorer_panels import HoverPanel, legend_html, selection_words
from napari_reddino.widgets._scatter import MODES, ScatterCanvas
from napari_reddino.widgets._workers import TaskRunner

COORDS = UMAP  # the map the explorer shows, whatever method made it
HIDDEN_COLUMNS = {*ORIGIN_COLUMNS, NAPARI_INDEX, EMBEDDING_ROW, *COORDS}


class ExplorerWidget(QWidget):
    """UMAP/PCA/t-SNE scatter of all gathered cells, linked to their Labels layers."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        follow_plugin_layers(napari_viewer)  # painted cells keep their rows true (#29)
        self.highlighter = _linking.SelectionHighlighter(napari_viewer)
        self._linked_layers: list[Labels] = []
        self._picked: dict[str, int] = {}  # each linked layer's selected label, last seen

        self.cells_label = QLabel("No cells loaded")
        self.cells_label.setWordWrap(True)
        self.refresh_button = QPushButton("Refresh cells")
        self.refresh_button.clicked.connect(self.refresh)
        self.counted = CountedSwitch(napari_viewer, self.session)

        self.method = panels.choice_box(panels.PROJECTIONS, DEFAULTS.map_method)  # the table's
        self.space = panels.FeatureSpaceChoice()  # embedding / morphology / both: what maps use
        self.project_runner = TaskRunner("Project")
        self.project_runner.run_button.clicked.connect(self.run_projection)

        self.cluster_method = panels.choice_box(panels.CLUSTERINGS, DEFAULTS.cluster_method)
        self.n_clusters = QSpinBox()
        self.n_clusters.setRange(2, 200)
        self.n_clusters.setValue(DEFAULTS.n_clusters)
        self.n_neighbors = QSpinBox()
        self.n_neighbors.setRange(2, 200)
        self.n_neighbors.setValue(DEFAULTS.n_neighbors)
        self.n_neighbors.setToolTip("Neighbors per cell for UMAP and Leiden (the CLI's default)")
        self.cluster_runner = TaskRunner("Cluster")
        self.cluster_runner.run_button.clicked.connect(self.run_clustering)

        self.color_column = QComboBox()
        self.color_column.currentTextChanged.connect(lambda _text: self.recolor())
        self.legend = QLabel("")
        self.legend.setWordWrap(True)

        self.scatter = ScatterCanvas()
        self.scatter.selection_changed.connect(self._on_scatter_selection)
        self.scatter.hovered.connect(self._on_hover)
        self.mode_buttons = QButtonGroup(self)
        mode_row = QHBoxLayout()
        for mode in MODES:
            button = QPushButton(mode.capitalize())
            button.setCheckable(True)
            button.setChecked(mode == "pan")
            button.clicked.connect(lambda _checked, m=mode: setattr(self.scatter, "mode", m))
            self.mode_buttons.addButton(button)
            mode_row.addWidget(button)
        reset = QPushButton("Fit")
        reset.clicked.connect(self.scatter.reset_view)
        mode_row.addWidget(reset)
        self.group_click = QCheckBox("Click selects its whole group")
        self.group_click.setToolTip(
            "Clicking one point selects every cell with the same value of the color column "
            "(e.g. a whole cluster)"
        )

        self.selection_label = QLabel("Selected: 0")
        self.selection_words = QLabel("")  # what marks the selection, in words
        self.selection_words.setWordWrap(True)
        self.goto_button = QPushButton("Go to cell")
        self.goto_button.clicked.connect(self.go_to_selected)
        self.to_layer_button = QPushButton("Selection → Labels")
        self.to_layer_button.clicked.connect(self.selection_to_layer)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(lambda: self.session.select([]))
        self.hover_panel = HoverPanel()

        self.batch_panel = BatchPanel(self._used_inputs)
        self.batch_runner = self.batch_panel.runner

        self.splitter = build_layout(self, mode_row)  # settings / plot / details
        self.session.layer_cells_changed.connect(self._on_pool)
        self.session.selection_changed.connect(self._on_selection)
        self.session.columns_changed.connect(self._on_columns)
        self.session.counted_only_changed.connect(lambda _on: self._show_coordinates())
        self._click = _linking.click_callback(lambda: self.session.layer_cells,
                                              self._on_cell_clicked)
        self.viewer.mouse_drag_callbacks.append(self._click)
        self.viewer.layers.events.inserted.connect(self._on_layers_changed)
        self.viewer.layers.events.removed.connect(self._on_layers_changed)
        if self.session.layer_cells is not None:
            self._on_pool(self.session.layer_cells)
        else:
            self.refresh(quiet=True)

    # --- layer_cells -------------------------------------------------------------------------
    @property
    def layer_cells(self) -> LayerCells | None:
        return self.session.layer_cells

    def refresh(self, quiet: bool = False) -> LayerCells | None:
        """Re-gather every embedded Labels layer of the viewer."""
        try:
            layer_cells = LayerCells.from_layers(self.viewer.layers)
        except SessionError as err:
            self.cells_label.setText(str(err) if not quiet else "No embedded cells yet")
            if not quiet:
                show_warning(str(err))
            self.session.set_layer_cells(None)
            return None
        self.session.set_layer_cells(layer_cells)
        return layer_cells

    def _on_layers_changed(self, event: Any) -> None:
        layer = event.value
        if _linking.OVERLAY_KEY in getattr(layer, "metadata", {}):
            return
        if isinstance(layer, Labels) and (
            any(layer == pooled for pooled in self._linked_layers)
            or layer.metadata.get(EMBEDDINGS_KEY) is not None
        ):
            self.refresh(quiet=True)

    def _on_pool(self, layer_cells: LayerCells | None) -> None:
        for layer in self._linked_layers:
            layer.events.selected_label.disconnect(self._on_selected_label)
        self._linked_layers = [] if layer_cells is None else list(layer_cells.layers)
        self._picked = {layer.name: int(layer.selected_label) for layer in self._linked_layers}
        for layer in self._linked_layers:
            layer.events.selected_label.connect(self._on_selected_label)
        self.space.on_pool(layer_cells)  # the space the shown map was made in, or the default
        if layer_cells is None:
            self.scatter.set_points(np.zeros((0, 2), np.float32))
            return
        projection.warm_up_in_background(neighbors_index=len(layer_cells) > EXACT_MAX)  # NN-descent
        text = f"{len(layer_cells)} cells in {len(layer_cells.layers)} smear(s)"
        if layer_cells.skipped:
            text += f" ({layer_cells.skipped} without embedding left out)"
        self.cells_label.setText(text)
        self._update_color_choices()
        self._show_coordinates()

    def _show_coordinates(self) -> None:
        layer_cells = self.layer_cells
        if layer_cells is None:
            return
        if not set(COORDS) <= set(layer_cells.table.columns):
            self.scatter.set_points(np.zeros((0, 2), np.float32))
            self.legend.setText("Run a projection to see the cells")
            return
        xy = layer_cells.table[list(COORDS)].to_numpy(dtype=np.float32)  # NaN: not mapped
        xy[~self.session.used_mask()] = np.nan  # not counted: left off the map
        self.scatter.set_points(xy)
        self.recolor()

    def _update_color_choices(self) -> None:
        layer_cells = self.layer_cells
        current = self.color_column.currentText()
        columns = ([c for c in layer_cells.table.columns if c not in HIDDEN_COLUMNS]
                   if layer_cells else [])
        self.color_column.blockSignals(True)
        self.color_column.clear()
        self.color_column.addItems(columns)
        default = current if current in columns else ("subject" if "subject" in columns else "")
        if default:
            self.color_column.setCurrentText(default)
        self.color_column.blockSignals(False)

    def recolor(self) -> None:
        """Color points by the chosen features column (class colors come from the labels)."""
        layer_cells, column = self.layer_cells, self.color_column.currentText()
        if layer_cells is None or column not in layer_cells.table.columns:
            return
        if len(self.scatter.points) != len(layer_cells):
            return
        fixed = self.session.class_colors if column == "class" else None
        coloring = color_by(layer_cells.table[column], fixed=fixed)
        self.scatter.set_colors(coloring.rgba)
        unmapped = int((~self.scatter.shown & self.session.used_mask()).sum())
        note = (f"<br>{unmapped} object(s) not on this map: run the projection again"
                if unmapped else "")
        self.legend.setText(legend_html(coloring, column) + note)

    def _on_columns(self, columns: list[str]) -> None:
        if self.layer_cells is None:
            return
        if {*COORDS, COUNTED} & set(columns):  # a new map, or an object excluded by hand
            self._show_coordinates()
        self._update_color_choices()
        if self.color_column.currentText() in columns:
            self.recolor()

    # --- selection ----------------------------------------------------------------------
    def _on_scatter_selection(self, indices: np.ndarray) -> None:
        layer_cells, column = self.layer_cells, self.color_column.currentText()
        if (
            self.group_click.isChecked()
            and len(indices) == 1
            and layer_cells is not None
            and column in layer_cells.table.columns
        ):
            values = layer_cells.table[column].astype(str).to_numpy()
            indices = np.flatnonzero(values == values[indices[0]])
        self.session.select(indices)

    def _on_selection(self, indices: np.ndarray) -> None:
        layer_cells = self.layer_cells
        if layer_cells is None:
            return
        if not np.array_equal(self.scatter.selection, indices) and len(self.scatter.points):
            self.scatter.select(indices, emit=False)
        self.highlighter.show(layer_cells, indices)
        self.selection_label.setText(f"Selected: {len(indices)}")
        self.selection_words.setText(selection_words(layer_cells.table, indices,
                                                     self.session.used_mask()))

    def _on_selected_label(self, event: Any) -> None:
        """Image -> plot: the label picked in a layer's controls selects its point (napari
        also sends this event when only the colors change, e.g. greying: not a pick)."""
        layer = event.source
        picked, self._picked[layer.name] = self._picked.get(layer.name), int(layer.selected_label)
        if self.layer_cells is not None and picked != self._picked[layer.name]:
            self.session.select(self.layer_cells.indices_for(layer, [self._picked[layer.name]]))

    def _on_cell_clicked(self, index: int, add: bool) -> None:
        selection = np.union1d(self.session.selection, [index]) if add else [index]
        self.session.select(selection)

    def go_to_selected(self) -> None:
        """Center the viewer on the first selected cell."""
        if self.layer_cells is None or self.session.selection.size == 0:
            show_info("Select a cell first (click a point or a cell)")
            return
        _linking.go_to_cell(self.viewer, self.layer_cells, int(self.session.selection[0]))

    def selection_to_layer(self) -> list[Labels]:
        """New Labels layer(s) with only the selected cells."""
        if self.layer_cells is None or self.session.selection.size == 0:
            show_info("Nothing selected")
            return []
        return _linking.selection_to_labels(self.viewer, self.layer_cells, self.session.selection)

    def _on_hover(self, index: int) -> None:
        layer_cells = self.layer_cells
        if layer_cells is None or index < 0 or index >= len(layer_cells):
            self.hover_panel.show_cell(None, None)
            return
        layer = layer_cells.layers[int(layer_cells.table["_layer"].iloc[index])]
        crop = _linking.cell_crop(_linking.image_layer_for(self.viewer, layer), layer_cells, index)
        self.hover_panel.show_cell(crop, layer_cells.table.iloc[index])

    # --- long work ------------------------------------------------------------------------
    def _require_pool(self) -> LayerCells | None:
        layer_cells = self.layer_cells or self.refresh()
        if layer_cells is not None and self.session.used_mask().sum() < 3:
            show_warning(f"only {int(self.session.used_mask().sum())} cell(s) to use: need at "
                         "least 3 to project or cluster (untick 'Counted cells only'?)")
            return None
        return layer_cells

    def _used_inputs(self) -> tuple[Any, np.ndarray, Settings] | None:
        """Table, matrix (the explorer's space) and settings of the cells the map uses."""
        layer_cells = self._require_pool()
        if layer_cells is None:
            return None
        used = self.session.used_mask()
        return (layer_cells.table[used], self.space.matrix(layer_cells)[used], self.settings())


    def settings(self) -> Settings:
        """The analysis settings the dock's controls say (the CLI's defaults otherwise)."""
        return Settings(n_neighbors=self.n_neighbors.value(), n_clusters=self.n_clusters.value())

    def run_projection(self) -> None:
        """Map the used cells in a worker; writes ``umap_0``/``umap_1`` (NaN for the others)."""
        from napari_reddino.explore import analysis

        found, layer_cells = self._used_inputs(), self.layer_cells
        if found is None:
            return
        _table, vectors, settings = found
        method, used = panels.PROJECTIONS[self.method.currentText()], self.session.used_mask()

        def job(cancel):
            return (yield from analysis.iter_map(vectors, method, settings, cancel))

        def on_result(coords: np.ndarray) -> None:
            write_used(self.session, layer_cells, used,
                       {COORDS[0]: coords[:, 0], COORDS[1]: coords[:, 1]}, np.nan)

        self.project_runner.start(job, on_result, task=f"{self.method.currentText()} projection")

    def run_clustering(self) -> None:
        """Cluster the used cells in a worker; writes ``cluster`` (-1 for the others)."""
        from napari_reddino.explore import analysis

        found, layer_cells = self._used_inputs(), self.layer_cells
        if found is None:
            return
        _table, vectors, settings = found
        method, used = panels.CLUSTERINGS[self.cluster_method.currentText()], \
            self.session.used_mask()

        def job(cancel):
            return (yield from analysis.iter_clusters(vectors, method, settings, cancel))

        def on_result(ids: np.ndarray) -> None:
            write_used(self.session, layer_cells, used,
                       {"cluster": np.asarray(ids, dtype=np.int64)}, -1)
            self.color_column.setCurrentText("cluster")

        self.cluster_runner.start(job, on_result, task="clustering")

    def closeEvent(self, event: Any) -> None:
        if self._click in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._click)
        super().closeEvent(event)
