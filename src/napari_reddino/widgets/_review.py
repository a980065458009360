"""The labeling dock's state, free of Qt: label edits with undo/redo, review queue, counts.

Every change to ``class`` / ``class_source`` / ``confidence`` goes through
:class:`LabelBook`, which records what the cells held before so any edit (a click, a
selection, a propagation, an import) can be undone and redone as one step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.label.propagate import MANUAL, PROPAGATED, review_order, unlabeled_mask
from napari_reddino.plugin.session import SessionError, SharedSession

CLASS_COLUMNS = (nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE)


@dataclass
class LabelEdit:
    """One undoable change: the cells and their class columns before and after."""

    indices: np.ndarray
    before: dict[str, np.ndarray]
    after: dict[str, np.ndarray]
    description: str


def _column(table: pd.DataFrame, name: str, indices: np.ndarray) -> np.ndarray:
    if name not in table.columns:
        return np.full(len(indices), np.nan if name == nm.CONFIDENCE else None, dtype=object)
    return table[name].to_numpy(dtype=object)[indices]


class LabelBook:
    """Applies label edits to the shared session and keeps the undo / redo stacks."""

    def __init__(self, session: SharedSession, limit: int = 200) -> None:
        self.session = session
        self.undo_stack: list[LabelEdit] = []
        self.redo_stack: list[LabelEdit] = []
        self.limit = limit

    @property
    def table(self) -> pd.DataFrame:
        if self.session.layer_cells is None:
            raise SessionError("no cells loaded: embed a smear, then press Refresh in a dock")
        return self.session.layer_cells.table

    def classes(self) -> np.ndarray:
        """The class per pooled cell (None where unlabeled)."""
        column = _column(self.table, nm.CLASS, np.arange(len(self.table)))
        return np.where(unlabeled_mask(column), None, column)

    def edit(self, indices, after: dict[str, np.ndarray], description: str) -> LabelEdit:
        """Write ``after`` for ``indices`` and push the edit on the undo stack."""
        indices = np.asarray(indices, dtype=np.int64)
        before = {name: _column(self.table, name, indices) for name in CLASS_COLUMNS}
        change = LabelEdit(indices, before, after, description)
        self._write(indices, after)
        self.undo_stack = [*self.undo_stack, change][-self.limit :]
        self.redo_stack.clear()
        return change

    def assign(self, indices, class_name: str | None) -> LabelEdit:
        """Label cells manually (``None`` clears their label)."""
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        if indices.size == 0:
            raise SessionError("no cells selected: select points or click cells first")
        n = len(indices)
        after = {
            nm.CLASS: np.full(n, class_name, dtype=object),
            nm.CLASS_SOURCE: np.full(n, MANUAL if class_name else None, dtype=object),
            nm.CONFIDENCE: np.full(n, 1.0 if class_name else np.nan),
        }
        what = f"label {n} cell(s) as {class_name}" if class_name else f"clear {n} label(s)"
        return self.edit(indices, after, what)

    def manual_classes(self) -> np.ndarray:
        """The class of each manually labeled cell, None elsewhere (what propagation learns)."""
        source = _column(self.table, nm.CLASS_SOURCE, np.arange(len(self.table)))
        return np.where(source.astype(str) == MANUAL, self.classes(), None)

    def apply_propagation(self, result) -> LabelEdit:
        """Store a ``propagate.Propagation`` for every pooled cell (one undo step)."""
        indices = np.arange(len(self.table))
        after = {
            nm.CLASS: np.asarray(result.classes, dtype=object),
            nm.CLASS_SOURCE: np.asarray(result.source, dtype=object),
            nm.CONFIDENCE: np.asarray(result.confidence, dtype=np.float64),
        }
        return self.edit(indices, after, "propagate labels")

    def undo(self) -> LabelEdit | None:
        if not self.undo_stack:
            return None
        change = self.undo_stack.pop()
        self._write(change.indices, change.before)
        self.redo_stack.append(change)
        return change

    def redo(self) -> LabelEdit | None:
        if not self.redo_stack:
            return None
        change = self.redo_stack.pop()
        self._write(change.indices, change.after)
        self.undo_stack.append(change)
        return change

    def _write(self, indices: np.ndarray, columns: dict[str, np.ndarray]) -> None:
        existing = set(self.table.columns)
        for name, values in columns.items():
            if name == nm.CONFIDENCE:
                columns[name] = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy()
            elif name not in existing:
                columns[name] = np.asarray(values, dtype=object)
        self.session.write_columns(dict(columns), indices)

    def manual_count(self) -> int:
        if nm.CLASS_SOURCE not in self.table.columns:
            return 0
        return int((self.table[nm.CLASS_SOURCE].astype(str) == MANUAL).sum())

    def review_queue(self, counted_only: bool) -> np.ndarray:
        """Pooled indices of propagated cells, lowest confidence first (counted ones only
        unless ``counted_only`` is off)."""
        if nm.CLASS_SOURCE not in self.table.columns:
            return np.empty(0, dtype=np.int64)
        return np.asarray(review_order(self.table, counted_only=counted_only), dtype=np.int64)


def class_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Cells per class for each subject and image, with the share of that image (%)."""
    if nm.CLASS not in table.columns:
        return pd.DataFrame(columns=[nm.SUBJECT, nm.IMAGE, nm.CLASS, "count", "percent"])
    classes = table[nm.CLASS].astype(object).where(~unlabeled_mask(table[nm.CLASS]), "(unlabeled)")
    frame = pd.DataFrame(
        {
            nm.SUBJECT: table[nm.SUBJECT].astype(str) if nm.SUBJECT in table else "unknown",
            nm.IMAGE: table[nm.IMAGE].astype(str),
            nm.CLASS: classes.astype(str),
        }
    )
    counts = frame.groupby([nm.SUBJECT, nm.IMAGE, nm.CLASS]).size().rename("count").reset_index()
    totals = counts.groupby([nm.SUBJECT, nm.IMAGE])["count"].transform("sum")
    counts["percent"] = 100.0 * counts["count"] / totals
    return counts


__all__ = ["MANUAL", "PROPAGATED", "LabelBook", "LabelEdit", "class_counts"]
