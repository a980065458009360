"""The class-set editor of the labeling dock: list with colors (the legend of the class colors
on the smears), add/rename/remove, JSON."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from napari.utils.notifications import show_error
from psygnal import Signal
from qtpy.QtGui import QColor, QIcon, QPixmap
from qtpy.QtWidgets import (
    QColorDialog,
    QFileDialog,
    QGridLayout,
    QInputDialog,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_reddino.label.classes import DEFAULT_CLASS_SET, ClassSet


def _swatch(color: str) -> QIcon:
    pixmap = QPixmap(14, 14)
    pixmap.fill(QColor(color))
    return QIcon(pixmap)


class ClassListEditor(QWidget):
    """Shows a :class:`ClassSet`; the current row is the active class.

    ``in_use`` returns the cells' class column so a class still in use is never removed;
    ``on_rename(old, new)`` recodes the cells when a class is renamed.
    """

    class_set_changed = Signal(object)  # the new ClassSet

    def __init__(
        self,
        in_use: Callable[[], object],
        on_rename: Callable[[str, str], None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.class_set: ClassSet = DEFAULT_CLASS_SET
        self._in_use = in_use
        self._on_rename = on_rename
        self.list = QListWidget()
        buttons = QGridLayout()
        actions = {
            "Add...": self._ask_add,
            "Rename...": self._ask_rename,
            "Remove": self._remove_current,
            "Color...": self._ask_color,
            "Save set...": self._ask_save,
            "Load set...": self._ask_load,
        }
        for i, (text, slot) in enumerate(actions.items()):
            button = QPushButton(text)
            button.clicked.connect(lambda _checked=False, s=slot: s())
            buttons.addWidget(button, i // 3, i % 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.set_class_set(DEFAULT_CLASS_SET)

    # --- state ---------------------------------------------------------------------------
    @property
    def active_class(self) -> str | None:
        row = self.list.currentRow()
        return self.class_set.names[row] if 0 <= row < len(self.class_set) else None

    def set_active(self, name: str) -> None:
        self.list.setCurrentRow(self.class_set.index(name))

    def set_class_set(self, class_set: ClassSet) -> None:
        active = self.active_class if self.list.count() else None
        self.class_set = class_set
        self.list.clear()
        for name, color in zip(class_set.names, class_set.colors):
            key = class_set.shortcut_of(name)
            text = f"{key}  {name}" if key else f"    {name}"
            item = QListWidgetItem(_swatch(color), text)
            item.setToolTip(f"{name}: color {color}" + (f", key {key}" if key else ""))
            self.list.addItem(item)
        rows = min(max(len(class_set), 6), 13)  # the legend: up to 13 classes without scrolling
        row_height = max(self.list.sizeHintForRow(0), self.list.fontMetrics().height() + 2)
        self.list.setMinimumHeight(rows * row_height + 2 * self.list.frameWidth() + 4)
        if active in class_set:
            self.set_active(active)
        elif len(class_set):
            self.list.setCurrentRow(0)
        self.class_set_changed.emit(class_set)

    # --- edits (each also callable from code / tests) ---------------------------------
    def add(self, name: str, color: str | None = None) -> bool:
        return self._apply(lambda: self.class_set.add(name, color))

    def rename(self, old: str, new: str) -> bool:
        if not self._apply(lambda: self.class_set.rename(old, new)):
            return False
        self._on_rename(old, new)
        return True

    def remove(self, name: str) -> bool:
        return self._apply(lambda: self.class_set.remove(name, in_use=self._in_use()))

    def recolor(self, name: str, color: str) -> bool:
        def change() -> ClassSet:
            colors = list(self.class_set.colors)
            colors[self.class_set.index(name)] = color
            return ClassSet(self.class_set.names, tuple(colors), self.class_set.title)

        return self._apply(change)

    def save(self, path) -> Path:
        return self.class_set.save(path)

    def load(self, path) -> bool:
        return self._apply(lambda: ClassSet.load(path), check_in_use=True)

    def _apply(self, make: Callable[[], ClassSet], check_in_use: bool = False) -> bool:
        """Build the new set; on any error show it and keep the old set (nothing lost)."""
        try:
            new_set = make()
            if check_in_use:
                used = {str(c) for c in self._in_use() if isinstance(c, str) and c}
                missing = sorted(used - set(new_set.names))
                if missing:
                    raise ValueError(
                        f"the loaded class set lacks {missing}, which cells are labeled with; "
                        "kept the current set"
                    )
        except (ValueError, KeyError, OSError) as err:
            show_error(str(err).strip("'\""))
            return False
        self.set_class_set(new_set)
        return True

    # --- dialogs -----------------------------------------------------------------------
    def _ask_add(self) -> None:
        name, ok = QInputDialog.getText(self, "Add class", "Class name:")
        if ok and name.strip():
            self.add(name.strip())

    def _ask_rename(self) -> None:
        old = self.active_class
        if old is None:
            return
        new, ok = QInputDialog.getText(self, "Rename class", f"New name for {old}:", text=old)
        if ok and new.strip() and new.strip() != old:
            self.rename(old, new.strip())

    def _remove_current(self) -> None:
        if self.active_class is not None:
            self.remove(self.active_class)

    def _ask_color(self) -> None:
        name = self.active_class
        if name is None:
            return
        color = QColorDialog.getColor(QColor(self.class_set.color_of(name)), self)
        if color.isValid():
            self.recolor(name, color.name())

    def _ask_save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save class set", "", "JSON (*.json)")
        if path:
            self.save(path)

    def _ask_load(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load class set", "", "JSON (*.json)")
        if path:
            self.load(path)
