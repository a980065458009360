"""The labeling dock's numbers: cells per class, and the red-cell differential with its interval.

Both read the cells the shared "Counted cells only" switch says (intact red cells by default):
a label on a white cell, a platelet or a border cell is kept in the table and the exports but
enters no count. The differential is :func:`napari_reddino.label.differential.differential`
(per subject and per smear, 95 % Wilson intervals, ICSH grades), shown compact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QPushButton

from napari_reddino import names as nm
from napari_reddino.label.differential import class_sources, differential
from napari_reddino.widgets._explorer_panels import TablePanel
from napari_reddino.widgets._review import class_counts


def _used_words(session) -> str:
    """Which objects a count is over, in words."""
    summary = session.counted_summary()
    return summary if session.counted_only else f"every object ({summary})"


class CountsPanel(TablePanel):
    """Cells per class for each subject and image, over the used cells."""

    def __init__(self, session) -> None:
        super().__init__("Cells per class (per subject and image)")
        self.session = session
        self.update_button = QPushButton("Update counts")
        self.update_button.clicked.connect(lambda: self.update_counts())
        self.body.insertWidget(0, self.update_button)

    def update_counts(self) -> pd.DataFrame | None:
        layer_cells = self.session.layer_cells
        if layer_cells is None:
            return None
        table = layer_cells.table[self.session.used_mask()]
        counts = class_counts(table)
        self.show_frame(counts, f"Over {_used_words(self.session)}")
        return counts


def compact(diff: pd.DataFrame) -> pd.DataFrame:
    """The differential as a hematologist reads it: percent (95 % CI), grade, note."""
    low, high = (pd.to_numeric(diff[c], errors="coerce").to_numpy(float)
                 for c in ("ci_low", "ci_high"))  # an empty differential has object columns
    interval = [f"{a:.1f} to {b:.1f}" if np.isfinite(a) else "" for a, b in zip(low, high)]
    where = np.where(diff["level"] == "subject", diff[nm.SUBJECT].astype(str),
                     diff[nm.IMAGE].astype(str))
    return pd.DataFrame({
        "subject / smear": where, nm.CLASS: diff[nm.CLASS], "cells": diff["cells"],
        "of": diff["counted"], "%": pd.to_numeric(diff["percent"], errors="coerce").round(1),
        "95% CI (%)": interval, "grade": diff["grade"], "note": diff["note"]})


class DifferentialPanel(TablePanel):
    """Per subject and per smear: each class's share of the counted red cells, with its CI."""

    def __init__(self, session) -> None:
        super().__init__("Differential (95 % Wilson interval, ICSH grade)")
        self.session = session
        self.full: pd.DataFrame | None = None  # every column of the core's differential
        self.update_button = QPushButton("Update differential")
        self.update_button.clicked.connect(lambda: self.update_differential())
        self.body.insertWidget(0, self.update_button)

    def update_differential(self) -> pd.DataFrame | None:
        layer_cells = self.session.layer_cells
        if layer_cells is None:
            return None
        table, counted_only = layer_cells.public_table(), self.session.counted_only
        try:
            self.full = differential(table, counted_only=counted_only)
        except ValueError as err:
            show_warning(f"differential: {err}")
            return None
        what = ("" if len(self.full) else "no labeled red cell yet: label a few cells, "
                "propagate, update. ")
        self.show_frame(compact(self.full), f"{what}Over {_used_words(self.session)}; classes: "
                        f"{class_sources(table, counted_only=counted_only)}; white cells and "
                        "platelets never enter a red-cell differential")
        return self.full
