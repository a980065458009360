"""The labeling dock's file actions: export, import, autosave and restore of labels (a mixin).

Kept apart from ``labeling.py`` so the dock stays one screen of layout and signals; every
action goes through ``label.files`` and the dock's :class:`~._review.LabelBook` (undoable).
Restoring reads a file, so it asks with an Open dialog (a Save dialog would ask "replace it?",
and only "Yes" restored); the dock also offers the labels of an earlier session by itself
(:mod:`._label_restore`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QGridLayout, QGroupBox, QPushButton, QVBoxLayout

from napari_reddino import names as nm
from napari_reddino._paths import autosave_dir
from napari_reddino.label import files
from napari_reddino.label.journal import is_journal
from napari_reddino.widgets._label_restore import RestoreBar, class_set_for, offer_for
from napari_reddino.widgets._review import CLASS_COLUMNS


class LabelFilesMixin:
    """Export / import / autosave / restore for :class:`~.labeling.LabelingWidget`."""

    def files_box(self) -> QGroupBox:
        """The Files group, one button per file action (the offer of earlier labels,
        ``self.restore_bar``, goes at the top of the dock, where a returning user looks)."""
        self.restore_bar = RestoreBar(self.restore_labels)
        buttons = {"export_button": ("Export labels...", self.export_labels),
                   "import_button": ("Import labels...", self.import_labels),
                   "restore_button": ("Restore labels...", self.restore_labels),
                   "autosave_button": ("Autosave to...", self.set_autosave)}
        grid = QGridLayout()
        for i, (attribute, (text, action)) in enumerate(buttons.items()):
            button = QPushButton(text)
            button.clicked.connect(lambda _checked=False, a=action: a())
            setattr(self, attribute, button)
            grid.addWidget(button, i // 2, i % 2)
        self.restore_button.setToolTip("Open an autosave of an earlier session (or a label "
                                       "file) and put its labels back on the loaded cells")
        box = QGroupBox("Files")
        QVBoxLayout(box).addLayout(grid)
        return box

    def offer_restore(self) -> None:
        """Show "Restore N labels from <file>" when an earlier session labeled these cells."""
        self.restore_bar.show_offer(offer_for(self))

    def restore_labels(self, path: str | Path | None = None) -> bool:
        """Put back the labels of an earlier session: an autosave journal (autosaving then
        continues in it) or a label table (imported)."""
        if self.layer_cells is None:
            show_warning("load and embed the smears before restoring their labels")
            return False
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Restore labels from", str(autosave_dir()),
                "Label autosaves and tables (*.csv *.parquet)")
            if not path:
                return False
        path = Path(path)
        try:  # classes of that session the dock's set lacks come with the labels
            needed = files.read_labels(path)[nm.CLASS].dropna().unique()
        except (ValueError, OSError) as err:
            show_error(f"restore failed: {err}")
            return False
        class_set = class_set_for(self.classes.class_set, needed, self._class_column())
        if class_set is not None:
            self.classes.set_class_set(class_set)
            show_info(f"class set {class_set.title!r} ({len(class_set)} classes) for the "
                      f"restored labels")
        journal = path.suffix.lower() == ".csv" and is_journal(path)
        done = self.set_autosave(path) if journal else self.import_labels(path)
        if done:
            self.restore_bar.show_offer(None)
        return done

    def export_labels(self, path: str | Path | None = None) -> Path | None:
        if self.layer_cells is None:
            show_warning("no cells to export")
            return None
        if path is None:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export labels", "", "Tables (*.csv *.parquet)"
            )
            if not path:
                return None
        try:
            return files.export_labels(self.layer_cells.public_table(), path)
        except (ValueError, OSError) as err:
            show_error(f"export failed: {err}")
            return None

    def import_labels(self, path: str | Path | None = None) -> bool:
        """Merge a label table by (image, label); unknown cells are reported, never lost."""
        if self.layer_cells is None:
            show_warning("load and embed the smears before importing their labels")
            return False
        if path is None:
            path, _ = QFileDialog.getOpenFileName(
                self, "Import labels", "", "Tables (*.csv *.parquet)"
            )
            if not path:
                return False
        try:
            result = files.import_labels(
                path, self.layer_cells.public_table(), class_names=self.classes.class_set.names
            )
        except (ValueError, OSError) as err:
            show_error(f"import failed: {err}")
            return False
        merged = result.table
        columns = {name: merged[name].to_numpy(dtype=object) for name in CLASS_COLUMNS}
        self.book.edit(np.arange(len(self.layer_cells)), columns, f"import {Path(path).name}")
        (show_warning if len(result.missing) or len(result.moved) else show_info)(result.message)
        self._after_edit(result.message)
        return True

    def set_autosave(self, path: str | Path | None = None) -> bool:
        """Autosave manual labels to ``path`` (a new file: the Save dialog); labels already saved
        there are restored first, never overwritten."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Autosave labels to (a new file)", "",
                                                  "CSV (*.csv)")
            if not path:
                return False
        try:
            saver = files.Autosaver(path)
        except (ValueError, OSError) as err:
            show_error(f"autosave: {err}")
            return False
        if len(saver) and self.layer_cells is not None:
            try:
                result = files.merge_labels(
                    self.layer_cells.public_table(),
                    saver.frame(),
                    class_names=self.classes.class_set.names,
                )
            except ValueError as err:
                show_error(f"autosave file {saver.path.name} not restored: {err}")
                return False
            columns = {name: result.table[name].to_numpy(dtype=object) for name in CLASS_COLUMNS}
            self.book.edit(np.arange(len(self.layer_cells)), columns, "restore autosave")
            show_info(f"restored from autosave: {result.message}")
        self.autosaver = saver
        self._after_edit(f"autosaving manual labels to {saver.path}")
        return True
