"""The labeling dock's file actions: export, import and autosave of labels (a mixin).

Kept apart from ``labeling.py`` so the dock stays one screen of layout and signals; every
action goes through ``label.files`` and the dock's :class:`~._review.LabelBook` (undoable).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog

from napari_reddino.label import files
from napari_reddino.widgets._review import CLASS_COLUMNS


class LabelFilesMixin:
    """Export / import / autosave for :class:`~.labeling.LabelingWidget`."""

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
        """Autosave manual labels to ``path``; labels already saved there are restored first."""
        if path is None:
            path, _ = QFileDialog.getSaveFileName(self, "Autosave labels to", "", "CSV (*.csv)")
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
