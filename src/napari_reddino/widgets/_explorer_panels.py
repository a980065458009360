"""Side panels of the explorer dock: the hovered cell, the legend, batch-effect metrics, and
its choices (map and cluster methods from ``names``, initial values from ``defaults``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from qtpy.QtCore import Qt
from qtpy.QtGui import QImage, QPixmap
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.explore.spaces import SPACES, available_spaces, resolve_space, space_matrix
from napari_reddino.morphology.features import describe_cell
from napari_reddino.widgets._coloring import Coloring

_MAP_TEXT = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}
_CLUSTER_TEXT = {"kmeans": "k-means", "hdbscan": "HDBSCAN", "leiden": "Leiden (neighbor graph)"}
#: shown text -> method, in the order ``names`` declares the methods
PROJECTIONS = {_MAP_TEXT[m]: m for m in nm.MAP_METHODS}
CLUSTERINGS = {_CLUSTER_TEXT[m]: m for m in nm.CLUSTER_METHODS}

THUMBNAIL_PX = 96
SHOWN_FEATURES = (
    "image",
    "subject",
    "label",
    "class",
    "confidence",
    "cluster",
    "area",
    "eccentricity",
    "solidity",
)


def _hex(color) -> str:
    r, g, b = (int(255 * float(c)) for c in np.asarray(color)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def legend_html(coloring: Coloring, column: str) -> str:
    """A compact legend: colored squares per category, or the numeric range."""
    if coloring.categories:
        items = [
            f"<span style='color:{_hex(c)}'>&#9632;</span>&nbsp;{name or '(none)'}"
            for name, c in list(coloring.categories.items())[:40]
        ]
        return f"<b>{column}</b>: " + " &nbsp; ".join(items)
    if coloring.value_range is not None:
        low, high = coloring.value_range
        return f"<b>{column}</b> ({coloring.colormap}): {low:.4g} &rarr; {high:.4g}"
    return ""


class HoverPanel(QWidget):
    """Thumbnail and features of the cell under the mouse in the scatter plot."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.thumbnail = QLabel()
        self.thumbnail.setFixedSize(THUMBNAIL_PX, THUMBNAIL_PX)
        self.thumbnail.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.details = QLabel("Hover a point to see its cell")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.thumbnail)
        layout.addWidget(self.details, 1)

    def show_cell(self, crop: np.ndarray | None, row: pd.Series | None) -> None:
        if row is None:
            self.thumbnail.clear()
            self.details.setText("Hover a point to see its cell")
            return
        lines = []
        for name in SHOWN_FEATURES:
            if name in row.index and not pd.isna(row[name]):
                value = row[name]
                text = f"{value:.3g}" if isinstance(value, float | np.floating) else str(value)
                lines.append(f"<b>{name}</b>: {text}")
        words = describe_cell(row)  # its morphology in words and numbers, when measured
        if words:
            lines.append("<i>" + words.replace("\n", "<br>") + "</i>")
        self.details.setText("<br>".join(lines))
        if crop is None:
            self.thumbnail.setText("no image")
            return
        height, width = crop.shape[:2]
        image = QImage(crop.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
        self.thumbnail.setPixmap(
            QPixmap.fromImage(image).scaled(
                THUMBNAIL_PX,
                THUMBNAIL_PX,
                Qt.AspectRatioMode.KeepAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )


class TablePanel(QGroupBox):
    """A titled table with an "Export CSV" button (batch metrics, class counts)."""

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(title, parent)
        self.frame: pd.DataFrame | None = None
        self.table = QTableWidget()
        self.table.setMinimumHeight(110)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.export_button = QPushButton("Export CSV...")
        self.export_button.setEnabled(False)
        self.export_button.clicked.connect(lambda: self.export_csv())
        self.body = QVBoxLayout(self)
        self.body.addWidget(self.summary)
        self.body.addWidget(self.table)
        self.body.addWidget(self.export_button)

    def show_frame(self, frame: pd.DataFrame, summary: str = "") -> None:
        self.frame = frame.reset_index() if frame.index.name else frame.reset_index(drop=True)
        shown = self.frame
        self.table.setRowCount(len(shown))
        self.table.setColumnCount(len(shown.columns))
        self.table.setHorizontalHeaderLabels([str(c) for c in shown.columns])
        for r, values in enumerate(shown.itertuples(index=False)):
            for c, value in enumerate(values):
                text = f"{value:.3g}" if isinstance(value, float | np.floating) else str(value)
                self.table.setItem(r, c, QTableWidgetItem(text))
        self.table.resizeColumnsToContents()
        self.summary.setText(summary)
        self.export_button.setEnabled(True)

    def export_csv(self, path: str | Path | None = None) -> Path | None:
        """Write the shown table; asks for a file name when ``path`` is None."""
        if self.frame is None:
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Export table", "", "CSV (*.csv)")
            if not path:
                return None
        path = Path(path)
        from napari_reddino.io.atomic import write_csv

        return write_csv(self.frame, path, "exported table")  # formulas escaped, atomic


def choice_box(texts: dict[str, str], value: str) -> QComboBox:
    """A combo box of ``{shown text: value}`` showing ``value`` (a default from the table)."""
    box = QComboBox()
    box.addItems(list(texts))
    box.setCurrentText(next(text for text, v in texts.items() if v == value))
    return box


def recorded_space(layer_cells) -> str | None:
    """The space the cells' map was made in, as their run folder records it (``summary.json``)."""
    if layer_cells is None or not set(nm.UMAP) <= set(layer_cells.table.columns):
        return None
    from napari_reddino.runs.combine import read_summary

    for layer in layer_cells.layers:
        run = layer.metadata.get(nm.META_RUN)
        try:
            summary = read_summary(run) if run else {}
        except (OSError, ValueError):
            continue
        if summary.get("feature_space") in SPACES:
            return str(summary["feature_space"])
    return None


class FeatureSpaceChoice(QComboBox):
    """The explorer's "Compare cells in" choice: what the map and the clusters are made of.

    It shows the space of the map on screen: a run folder's recorded one, the table's default
    before any map, and whatever the dock last used once the user picks or computes here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.addItems(list(SPACES))
        self.setCurrentText(DEFAULTS.space)
        self.setToolTip("embedding: the backbone's vector; morphology: the standardized size, "
                        "shape, pallor and stain numbers; both: the two together")
        self._kept = False  # the user picked a space or the dock computed in it: keep it
        self.activated.connect(lambda _i: setattr(self, "_kept", True))

    def on_pool(self, layer_cells) -> None:
        """Show the space of the new cells' map (or the default they allow; the table's
        default without cells)."""
        if self._kept:
            return
        if layer_cells is None:
            self.setCurrentText(DEFAULTS.space)
            return
        allowed = available_spaces(layer_cells.table, layer_cells.vectors)
        recorded = recorded_space(layer_cells)
        if recorded in allowed:
            self.setCurrentText(recorded)
        elif allowed:
            self.setCurrentText(resolve_space(None, layer_cells.table, layer_cells.vectors))

    def matrix(self, layer_cells) -> np.ndarray:
        """The layer_cells's cells in the shown space (the default one when the cells lack it)."""
        allowed = available_spaces(layer_cells.table, layer_cells.vectors)
        if allowed and self.currentText() not in allowed:
            self.setCurrentText(resolve_space(None, layer_cells.table, layer_cells.vectors))
        self._kept = True
        return space_matrix(layer_cells.table, layer_cells.vectors, self.currentText(),
                            row_column=None)


def selection_words(table, selected, used) -> str:
    """What sets the selected cells apart from the other mapped cells, in words (an empty
    string when there is nothing to compare: no morphology, or cells on one side only)."""
    import numpy as np

    from napari_reddino.explore.markers import describe, rank_features
    from napari_reddino.morphology.features import feature_columns

    used = np.asarray(used, bool)
    flags = np.zeros(len(table), bool)
    flags[np.asarray(selected, dtype=np.int64)] = True
    flags, rows = flags[used], table[used]
    if not feature_columns(rows.columns) or flags.sum() < 3 or (~flags).sum() < 3:
        return ""
    return "Selected cells: " + describe(rank_features(rows, flags))
