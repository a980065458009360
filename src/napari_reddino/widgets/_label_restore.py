"""The labeling dock's offer to restore earlier labels: "Restore 12 labels from <file>".

A hematologist who restarts napari should not start from zero, nor have to find the autosave
through a Save dialog. When cells are loaded, the dock looks at the autosave journals of earlier
sessions (the user cache folder, newest first) and at label files beside the smears' photos
(``*label*.csv`` / ``.parquet`` in the photo's folder); the first one holding manual labels
for loaded cells that the cells lack is offered with one button. Nothing is read over the
network and nothing changes until the user clicks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QHBoxLayout, QPushButton, QSizePolicy, QWidget

from napari_reddino import names as nm
from napari_reddino._paths import AUTOSAVE_GLOB, autosave_dir
from napari_reddino.label import files
from napari_reddino.label.classes import CLASS_SETS, ClassSet

MAX_AUTOSAVES = 20  # earlier sessions looked at, newest first
BESIDE_PATTERNS = ("*label*.csv", "*label*.parquet")


@dataclass(frozen=True)
class RestoreOffer:
    path: Path
    count: int  # loaded cells whose manual label the file would put back

    @property
    def text(self) -> str:
        return f"Restore {self.count} label{'s' * (self.count != 1)} from {self.path.name}"


def autosaves(folder: Path | None = None) -> list[Path]:
    """Autosave journals of earlier sessions, newest first."""
    folder = folder or autosave_dir()
    try:
        found = [p for p in folder.glob(AUTOSAVE_GLOB) if p.is_file()]
    except OSError:
        return []
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)[:MAX_AUTOSAVES]


def beside_smears(layers: Iterable[Any], viewer_layers: Any) -> list[Path]:
    """Label files in the folders of the smears' photos (their layers' ``source.path``)."""
    folders: list[Path] = []
    for layer in layers:
        sources = [layer]
        image = layer.metadata.get(nm.META_IMAGE_LAYER) if hasattr(layer, "metadata") else None
        if image is not None and image in viewer_layers:
            sources.append(viewer_layers[image])
        for source in sources:
            path = getattr(getattr(source, "source", None), "path", None)
            if path:
                folder = Path(path) if Path(path).is_dir() else Path(path).parent
                if folder not in folders:
                    folders.append(folder)
    found: list[Path] = []
    for folder in folders:
        for pattern in BESIDE_PATTERNS:
            found += sorted(p for p in folder.glob(pattern) if p.is_file() and p not in found)
    return found


def class_set_for(current: ClassSet, needed: Iterable[str], in_use: Iterable) -> ClassSet | None:
    """The class set that restored labels need (None: the current one has their classes): a
    shipped set holding them and the classes in use (a Chula session restored into a dock that
    starts with the synthetic set), else the current set with the missing classes added."""
    needed = {str(n) for n in needed if isinstance(n, str) and n}
    if needed <= set(current.names):
        return None
    used = {str(c) for c in in_use if isinstance(c, str) and c}
    for shipped in CLASS_SETS.values():
        if (needed | used) <= set(shipped.names):
            return shipped
    grown = current
    for name in sorted(needed - set(current.names)):
        grown = grown.add(name)
    return grown


def labels_to_restore(table: pd.DataFrame, path: Path) -> int:
    """How many loaded cells would get a manual label back from ``path`` (0: not a label file
    or nothing for these cells); classes outside the dock's set count too (they are added)."""
    try:
        saved = files.read_labels(path)
        if not saved[nm.IMAGE].astype(str).isin(set(table[nm.IMAGE].astype(str))).any():
            return 0  # another smear's session: no merge needed to know
        merged = files.merge_labels(table, saved, manual_only=True).table
    except (ValueError, OSError, KeyError):
        return 0
    after = merged[nm.CLASS].astype(object).to_numpy()
    manual = merged[nm.CLASS_SOURCE].astype(str).to_numpy() == nm.MANUAL
    before = (table[nm.CLASS].astype(object).to_numpy() if nm.CLASS in table.columns
              else np.full(len(table), None, dtype=object))
    was_manual = (table[nm.CLASS_SOURCE].astype(str).to_numpy() == nm.MANUAL
                  if nm.CLASS_SOURCE in table.columns else np.zeros(len(table), bool))
    changed = manual & ~(was_manual & (before == after))
    return int(changed.sum())


def find_offer(table: pd.DataFrame, candidates: Iterable[Path],
               skip: Iterable[Path] = ()) -> RestoreOffer | None:
    """The first candidate with labels to give back to the loaded cells."""
    skip = {Path(p).resolve() for p in skip}
    for path in candidates:
        if path.resolve() in skip:
            continue
        count = labels_to_restore(table, path)
        if count:
            return RestoreOffer(path, count)
    return None


class RestoreBar(QWidget):
    """One button saying what it restores, and "Not now"; hidden while there is no offer."""

    def __init__(self, restore: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.offer: RestoreOffer | None = None
        self.dismissed: set[Path] = set()
        self.restore_button = QPushButton("")
        # a long file name must not widen the dock (the tooltip has the whole path)
        self.restore_button.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.restore_button.clicked.connect(lambda: self.offer and restore(self.offer.path))
        self.dismiss_button = QPushButton("Not now")
        self.dismiss_button.clicked.connect(self.dismiss)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.restore_button, 1)
        layout.addWidget(self.dismiss_button)
        self.show_offer(None)

    def show_offer(self, offer: RestoreOffer | None) -> None:
        if offer is not None and offer != self.offer:  # the dock may be scrolled or hidden
            show_info(f"{offer.text}? The labeling dock offers it at its top")
        self.offer = offer
        if offer is not None:
            self.restore_button.setText(offer.text)
            self.restore_button.setToolTip(
                f"{offer.path}\nmanual labels of an earlier session (or a label file beside "
                "the smear) for the cells loaded now; autosaving continues in that file")
        self.setVisible(offer is not None)

    def dismiss(self) -> None:
        if self.offer is not None:
            self.dismissed.add(self.offer.path)
        self.show_offer(None)


def offer_for(dock: Any) -> RestoreOffer | None:
    """What the dock should offer now: earlier labels the loaded cells lack."""
    layer_cells = dock.layer_cells
    if layer_cells is None:
        return None
    skip = [*dock.restore_bar.dismissed]
    if dock.autosaver is not None:
        skip.append(dock.autosaver.path)
    candidates = beside_smears(layer_cells.layers, dock.viewer.layers) + autosaves()
    return find_offer(layer_cells.public_table(), candidates, skip)
