"""The labeling dock's feature-space choice and its "Suggest cells to label" stepper.

The space (embedding / morphology / both) is what propagation and the suggestions measure
distances in; suggestions are ``suggest.suggest_cells`` medoids, shown one by one (selected,
centered, described in words) so the user labels them with the usual keys. Only cells the
shared "Counted cells only" switch uses are suggested (intact red cells by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
)

from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.spaces import SPACES, available_spaces, resolve_space, space_matrix
from napari_reddino.label.suggest import suggest_cells
from napari_reddino.morphology.features import describe_cell
from napari_reddino.names import CLASS_SOURCE, MANUAL, PROPAGATION_METHODS
from napari_reddino.widgets import _linking

METHOD_TEXT = {"auto": "auto (cross-validated)", "knn": "k-NN votes",
               "logreg": "logistic regression"}


class SuggestPanel(QGroupBox):
    """Feature space + classifier choice, and the suggested cells to label first."""

    def __init__(self, viewer: Any, session: Any) -> None:
        super().__init__("Feature space and suggestions")
        self.viewer, self.session = viewer, session
        self.space = QComboBox()
        self.space.addItems(list(SPACES))
        self.space.setCurrentText(DEFAULTS.space)
        self.space.setToolTip("embedding: the backbone's vector; morphology: the standardized "
                              "size / shape / pallor / stain numbers; both: the two together")
        self._chosen = False  # the user picked a space: keep it when the cells change
        self.space.activated.connect(lambda _i: setattr(self, "_chosen", True))
        self.method = QComboBox()
        for name in PROPAGATION_METHODS:
            self.method.addItem(METHOD_TEXT[name], name)
        self.method.setCurrentIndex(self.method.findData(DEFAULTS.propagation_method))
        self.count = QSpinBox()
        self.count.setRange(1, 200)
        self.count.setValue(DEFAULTS.n_suggestions)
        self.suggest_button = QPushButton("Suggest cells to label")
        self.suggest_button.clicked.connect(self.suggest)
        self.next_button = QPushButton("Next suggestion")
        self.next_button.clicked.connect(self.next_suggestion)
        self.info = QLabel("Before labeling: suggest a few diverse, typical cells")
        self.info.setWordWrap(True)
        self.picks = np.zeros(0, np.int64)
        self.position = -1
        form = QFormLayout(self)
        form.addRow("Compare cells in", self.space)
        form.addRow("Propagate with", self.method)
        form.addRow("Cells to suggest", self.count)
        buttons = QHBoxLayout()
        buttons.addWidget(self.suggest_button)
        buttons.addWidget(self.next_button)
        form.addRow(buttons)
        form.addRow(self.info)

    @property
    def layer_cells(self):
        return self.session.layer_cells

    def on_pool(self, layer_cells: Any) -> None:
        """Offer the spaces the gathered cells allow; pick the default one."""
        self.picks, self.position = np.zeros(0, np.int64), -1
        if layer_cells is None:
            return
        allowed = available_spaces(layer_cells.table, layer_cells.vectors)
        if allowed and (not self._chosen or self.space.currentText() not in allowed):
            self.space.setCurrentText(resolve_space(None, layer_cells.table, layer_cells.vectors))

    def space_name(self) -> str:
        return self.space.currentText()

    def method_name(self) -> str:
        return str(self.method.currentData())

    def matrix(self) -> np.ndarray:
        """The gathered cells in the chosen space (rows = layer_cells rows)."""
        return space_matrix(self.layer_cells.table, self.layer_cells.vectors, self.space_name(),
                            row_column=None)

    def suggest(self) -> np.ndarray:
        """Compute the suggestions (skipping labeled and unused cells), go to the first one."""
        if self.layer_cells is None:
            show_info("segment and embed a smear first")
            return self.picks
        try:
            x = self.matrix()
        except ValueError as err:
            show_error(str(err))
            return self.picks
        table = self.layer_cells.table
        manual = (table[CLASS_SOURCE].astype(str).to_numpy() == MANUAL
                  if CLASS_SOURCE in table.columns else np.zeros(len(table), bool))
        used = self.session.used_mask()
        if not (used & ~manual).any():
            show_info("every cell to use is labeled already (untick 'Counted cells only'?)")
            return self.picks
        self.picks = suggest_cells(x, self.count.value(), exclude=manual, counted=used)
        self.position = -1
        self.next_suggestion()
        return self.picks

    def next_suggestion(self) -> int | None:
        """Select, center and describe the next suggested cell."""
        if self.layer_cells is None or self.picks.size == 0:
            show_info("press 'Suggest cells to label' first")
            return None
        self.position = (self.position + 1) % self.picks.size
        index = int(self.picks[self.position])
        self.session.select([index])
        _linking.go_to_cell(self.viewer, self.layer_cells, index)
        row = self.layer_cells.table.iloc[index]
        words = describe_cell(row).replace("\n", ", ")
        self.info.setText(f"suggestion {self.position + 1}/{self.picks.size}: {row['image']} "
                          f"cell {row['label']}" + (f" ({words})" if words else "")
                          + "; label it with the keys 1-9")
        return index
