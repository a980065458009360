"""Labeling dock: label a few cells, propagate to all smears, review the uncertain ones.

Labels live in each Labels layer's ``features`` (``class``, ``class_source``,
``confidence``) through the viewer's shared :class:`~napari_reddino.plugin.session.SharedSession`,
so whatever the explorer selects (a lasso, a whole cluster with one click) can be labeled
here. Edits go through :class:`~._review.LabelBook` (undo / redo); propagation runs
``propagate.iter_propagate`` in a worker; ``label.files`` exports, imports and autosaves, and
an earlier session's labels are offered back (``_label_files.py``, ``_label_restore.py``). Keys
1-9 and what napari's status bar says about them: ``_class_hints.py``.
Counts, the differential, propagation targets, the review queue and suggestions use the cells
the shared "Counted cells only" switch says (intact red cells by default); a label put on any
other object is kept, only not counted.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from napari_reddino import names as nm
from napari_reddino._paths import session_autosave_path
from napari_reddino.defaults import DEFAULTS
from napari_reddino.label import files, propagate
from napari_reddino.label.classes import recode
from napari_reddino.plugin.session import LayerCells, SessionError, session_for
from napari_reddino.widgets import _linking, fill_with_scrolling
from napari_reddino.widgets._annotate_panel import AnnotatePanel
from napari_reddino.widgets._class_hints import ClassKeys, class_columns_first
from napari_reddino.widgets._class_list import ClassListEditor
from napari_reddino.widgets._corrections import follow_plugin_layers
from napari_reddino.widgets._counted import CountedSwitch, exclude_by_hand
from napari_reddino.widgets._counts import CountsPanel, DifferentialPanel
from napari_reddino.widgets._label_files import LabelFilesMixin
from napari_reddino.widgets._review import LabelBook
from napari_reddino.widgets._suggest_panel import SuggestPanel
from napari_reddino.widgets._workers import TaskRunner

SHORTCUT_KEYS = tuple(str(i) for i in range(1, 10))


class LabelingWidget(LabelFilesMixin, QWidget):
    """Class set, assign / undo / redo, propagation, review queue, counts, import / export."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        follow_plugin_layers(napari_viewer)  # painted cells keep their rows true (#29)
        self.book = LabelBook(self.session)
        self.autosaver: files.Autosaver | None = None
        self.keys = ClassKeys(napari_viewer, self._key_pressed)
        self.review_position = -1
        self.reviewed: int | None = None  # pooled index of the cell under review

        self.counted = CountedSwitch(napari_viewer, self.session)
        self.classes = ClassListEditor(self._class_column, self._recode)
        self.classes.class_set_changed.connect(self._on_class_set)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.assign_button = QPushButton("Label selection")
        self.assign_button.clicked.connect(lambda: self.assign_selection())
        self.clear_button = QPushButton("Clear label")
        self.clear_button.clicked.connect(lambda: self.assign_selection(None))
        self.undo_button = QPushButton("Undo")
        self.undo_button.clicked.connect(self.undo)
        self.redo_button = QPushButton("Redo")
        self.redo_button.clicked.connect(self.redo)
        self.exclude_button = QPushButton("Exclude from counts")
        self.exclude_button.clicked.connect(lambda: self.exclude_selection(True))
        self.include_button = QPushButton("Count again")
        self.include_button.clicked.connect(lambda: self.exclude_selection(False))
        self.click_to_label = QCheckBox("Clicking a cell labels it with the active class")
        self.show_classes = QCheckBox("Show class colors on the smears")
        self.show_classes.toggled.connect(lambda _on: self.update_class_view())

        self.k = QSpinBox()
        self.k.setRange(1, 100)
        self.k.setValue(DEFAULTS.propagation_k)
        self.spreading = QCheckBox("Label spreading along the cell graph")
        self.spreading.setChecked(DEFAULTS.spreading)
        self.center = QCheckBox("Compare cells around the mean cell (centered cosine)")
        self.center.setToolTip("ViT embeddings share one large common direction; measuring "
                               "cosine around the mean cell separates morphologies better")
        self.center.setChecked(DEFAULTS.center)
        self.suggest_panel = SuggestPanel(self.viewer, self.session)
        self.annotate_panel = AnnotatePanel(  # cells arrive classified by a reference model
            self.viewer, self.session, self.book, self.classes,
            lambda text: (self._after_edit(text), self.update_counts()))
        self.propagate_runner = TaskRunner("Propagate")
        self.propagate_runner.run_button.clicked.connect(self.run_propagation)

        self.next_button = QPushButton("Next uncertain")
        self.next_button.clicked.connect(self.next_uncertain)
        self.accept_button = QPushButton("Accept")
        self.accept_button.clicked.connect(lambda: self.accept_review())
        self.change_button = QPushButton("Set active class")
        self.change_button.clicked.connect(lambda: self.accept_review(self.classes.active_class))
        self.review_label = QLabel("Propagate, then review the least confident cells")
        self.review_label.setWordWrap(True)

        self.counts_panel = CountsPanel(self.session)
        self.differential_panel = DifferentialPanel(self.session)
        self._build_layout()
        self._click = _linking.click_callback(lambda: self.session.layer_cells,
                                              self._on_cell_clicked)
        self.viewer.mouse_drag_callbacks.append(self._click)
        self.session.layer_cells_changed.connect(self._on_pool)
        self.session.selection_changed.connect(self._on_selection)
        self.session.columns_changed.connect(self._on_columns)
        self.session.counted_only_changed.connect(self._on_counted_only)
        if self.session.layer_cells is None:
            self._load_pool()
        self._on_class_set(self.classes.class_set)
        self._on_pool(self.session.layer_cells)

    def _build_layout(self) -> None:
        def row(*widgets: QWidget) -> QHBoxLayout:
            line = QHBoxLayout()
            for widget in widgets:
                line.addWidget(widget)
            return line

        classes = QGroupBox("Classes (keys 1-9 label the selection)")
        QVBoxLayout(classes).addWidget(self.classes)
        labeling = QGroupBox("Label")
        llayout = QVBoxLayout(labeling)
        llayout.addLayout(row(self.assign_button, self.clear_button))
        llayout.addLayout(row(self.undo_button, self.redo_button))
        llayout.addLayout(row(self.exclude_button, self.include_button))
        llayout.addWidget(self.click_to_label)
        llayout.addWidget(self.show_classes)
        llayout.addWidget(self.status)
        spread = QGroupBox("Propagate to every loaded smear")
        form = QFormLayout(spread)
        form.addRow("Neighbors k", self.k)
        form.addRow(self.spreading)
        form.addRow(self.center)
        form.addRow(self.propagate_runner)
        review = QGroupBox("Review queue")
        rlayout = QVBoxLayout(review)
        rlayout.addLayout(row(self.next_button, self.accept_button, self.change_button))
        rlayout.addWidget(self.review_label)
        files_box = self.files_box()  # export, import, restore, autosave (_label_files.py)

        content = QWidget()
        layout = QVBoxLayout(content)
        for group in (self.restore_bar, self.counted, classes, self.annotate_panel,
                      self.suggest_panel, labeling, spread, review, self.counts_panel,
                      self.differential_panel, files_box):
            layout.addWidget(group)
        layout.addStretch(1)
        fill_with_scrolling(self, content, min_width=340)

    # --- layer_cells and classes --------------------------------------------------------------
    @property
    def layer_cells(self) -> LayerCells | None:
        return self.session.layer_cells

    def _load_pool(self) -> None:
        try:
            self.session.set_layer_cells(LayerCells.from_layers(self.viewer.layers))
        except SessionError as err:
            self.status.setText(str(err))

    def _class_column(self):
        return [] if self.layer_cells is None else self.book.classes()

    def _recode(self, old: str, new: str) -> None:
        if self.layer_cells is not None and nm.CLASS in self.layer_cells.table.columns:
            renamed = recode(self.layer_cells.table[nm.CLASS].astype(object), old, new).to_numpy()
            self.book.edit(np.arange(len(self.layer_cells)), {nm.CLASS: renamed}, f"rename {old}")

    def _on_class_set(self, class_set) -> None:
        self.session.class_colors = class_set.color_map
        self._bind_keys()
        self.session.columns_changed.emit([nm.CLASS])  # recolor plots and class view

    def _on_pool(self, layer_cells: LayerCells | None) -> None:
        self.book.undo_stack.clear()
        self.book.redo_stack.clear()
        self.review_position, self.reviewed = -1, None
        self._bind_keys()
        self.suggest_panel.on_pool(layer_cells)
        if layer_cells is not None:
            class_columns_first(layer_cells.layers)
            self.status.setText(f"{len(layer_cells)} cells in {len(layer_cells.layers)} smear(s)")
            self.update_class_view()
        self.offer_restore()  # labels of an earlier session for these cells: one click back

    def _on_counted_only(self, _on: bool) -> None:
        """The switch moved: the review restarts, numbers on show follow it."""
        self.review_position, self.reviewed = -1, None
        if self.counts_panel.frame is not None:
            self.update_counts()

    def _on_selection(self, indices: np.ndarray) -> None:
        self.assign_button.setText(f"Label selection ({len(indices)})")

    def _on_columns(self, columns: list[str]) -> None:
        if nm.CLASS in columns:
            if self.layer_cells is not None:  # the class first in napari's hover status
                class_columns_first(self.layer_cells.layers)
            self.update_class_view()

    def _bind_keys(self) -> None:
        """Keys 1-9: make that class active and label the current selection with it, bound on
        the viewer and on each pooled Labels layer (whose own number keys would win otherwise)."""
        self.keys.bind(self.classes.class_set.shortcuts,
                       [] if self.layer_cells is None else self.layer_cells.layers)

    def _key_pressed(self, name: str) -> str:
        active = self.viewer.layers.selection.active
        pooled = [] if self.layer_cells is None else self.layer_cells.layers
        if active.__class__.__name__ == "Labels" and not any(active == p for p in pooled):
            return ""  # another Labels layer (one being painted): its number keys are not ours
        self.classes.set_active(name)
        count = int(self.session.selection.size)
        if count and self.assign_selection(name):
            return f"labeled {count} selected cell(s)"
        return "active class (select cells, or click them, to label them)"

    # --- labeling ------------------------------------------------------------------------
    def assign_selection(self, class_name: str | bool | None = False) -> bool:
        """Label the explorer's selection with the active class (``None`` clears)."""
        name = self.classes.active_class if class_name is False else class_name
        return self._assign(self.session.selection, name)

    def _assign(self, indices, name: str | None) -> bool:
        try:
            change = self.book.assign(indices, name)
        except SessionError as err:
            show_warning(str(err))
            return False
        self._after_edit(change.description)
        return True

    def exclude_selection(self, excluded: bool = True) -> None:
        """Exclude the selected objects from every count by hand (or count them again)."""
        self.status.setText(exclude_by_hand(self.session, self.session.selection, excluded))

    def _on_cell_clicked(self, index: int, add: bool) -> None:
        if self.click_to_label.isChecked():
            self._assign([index], self.classes.active_class)

    def undo(self) -> None:
        change = self.book.undo()
        self._after_edit(f"undid: {change.description}" if change else "nothing to undo")

    def redo(self) -> None:
        change = self.book.redo()
        self._after_edit(f"redid: {change.description}" if change else "nothing to redo")

    def _after_edit(self, message: str) -> None:
        self.status.setText(message)
        layer_cells = self.layer_cells
        if layer_cells is None or nm.CLASS_SOURCE not in layer_cells.table:
            return
        if self.autosaver is None:  # the first manual label starts this session's autosave
            if not (layer_cells.table[nm.CLASS_SOURCE].astype(str) == propagate.MANUAL).any():
                return
            try:
                self.autosaver = files.Autosaver(session_autosave_path())
            except (ValueError, OSError) as err:
                show_warning(f"manual labels are not autosaved: {err}")
                return
            show_info(f"manual labels are autosaved to {self.autosaver.path} (after a restart "
                      "the dock offers them back; Restore labels... opens any autosave)")
        try:
            self.autosaver.sync(layer_cells.public_table())
        except OSError as err:
            show_warning(f"autosave to {self.autosaver.path} failed: {err}")

    def update_class_view(self) -> None:
        """One overlay per smear coloring each labeled cell with its class color."""
        on = self.layer_cells is not None and self.show_classes.isChecked()
        _linking.show_classes(self.viewer, self.layer_cells, self.book.classes() if on else None,
                              self.classes.class_set.color_map)

    # --- propagation and review ----------------------------------------------------------
    def run_propagation(self) -> None:
        """Propagate the manual labels of the used cells (the counted ones by default) to the
        other used cells, in a worker; labels on the other objects stay as they are."""
        if self.layer_cells is None:
            self._load_pool()
        layer_cells = self.layer_cells
        if layer_cells is None:
            show_warning("no embedded cells to propagate over")
            return
        manual, used = self.book.manual_classes(), self.session.used_mask()
        try:
            vectors = self.suggest_panel.matrix()
        except ValueError as err:
            show_error(str(err))
            return
        k, spreading, method = self.k.value(), self.spreading.isChecked(), \
            self.suggest_panel.method_name()
        center, names = self.center.isChecked(), self.classes.class_set.names

        def job(cancel):  # the core's defaults are the dock's initial values (defaults.py)
            return (yield from propagate.iter_propagate(
                vectors, manual, k=k, spreading=spreading, center=center, class_names=names,
                method=method, counted=used, cancel=cancel))

        def on_result(result) -> None:
            if self.layer_cells is not layer_cells:
                raise SessionError("the cells changed while propagating; run it again")
            self.book.apply_propagation(result)
            self.review_position, self.reviewed = -1, None
            self._after_edit(
                f"propagated {int((~propagate.unlabeled_mask(manual)).sum())} "
                f"manual labels to {int(used.sum())} of {len(layer_cells)} objects "
                f"({self.suggest_panel.space_name()} space, {result.method})"
            )
            if result.warning:
                show_warning(result.warning)
            self.update_counts()

        self.propagate_runner.start(job, on_result, task="propagation")

    def next_uncertain(self) -> int | None:
        """Select and go to the next propagated cell, lowest confidence first."""
        if self.layer_cells is None:
            return None
        queue = self.book.review_queue(self.session.counted_only)
        if queue.size == 0:
            show_info("no propagated cells to review: run Propagate first")
            return None
        self.review_position = (self.review_position + 1) % queue.size
        index = int(queue[self.review_position])
        self.reviewed = index
        self.session.select([index])
        _linking.go_to_cell(self.viewer, self.layer_cells, index)
        row = self.layer_cells.table.iloc[index]
        self.review_label.setText(
            f"cell {self.review_position + 1}/{queue.size}: {row['image']} label {row['label']}"
            f" is <b>{row['class']}</b> (confidence {float(row['confidence']):.2f})"
        )
        return index

    def accept_review(self, class_name: str | None = None) -> bool:
        """Confirm (or change) the reviewed cell's class as manual, then re-propagate."""
        if self.reviewed is None or self.layer_cells is None:
            show_info("press Next uncertain first")
            return False
        name = class_name or str(self.layer_cells.table[nm.CLASS].iloc[self.reviewed])
        if not self._assign([self.reviewed], name):
            return False
        self.review_position -= 1  # the queue shrank by this cell
        self.run_propagation()
        return True

    def update_counts(self) -> None:
        """Cells per class and the differential, over the used cells."""
        self.counts_panel.update_counts()
        self.differential_panel.update_differential()

    def showEvent(self, event: Any) -> None:
        """A tab shows its dock's window title with '&' as a shortcut mark ("Label _propagate"):
        escape it as '&&' (napari's own title bar draws the name, not the window title)."""
        super().showEvent(event)
        dock = self.parentWidget()
        while dock is not None and not isinstance(dock, QDockWidget):
            dock = dock.parentWidget()
        title = dock.windowTitle() if dock is not None else ""
        if "&" in title and "&&" not in title:
            dock.setWindowTitle(title.replace("&", "&&"))

    def closeEvent(self, event: Any) -> None:
        if self._click in self.viewer.mouse_drag_callbacks:
            self.viewer.mouse_drag_callbacks.remove(self._click)
        self.keys.release()
        super().closeEvent(event)
