"""Hand corrections in napari: a cell's row follows the paint; merge and split by clicking.

napari's brush, eraser, fill and undo change a Labels layer's pixels. A :class:`PaintFollower`
on every Labels layer the plugin made (segmentation dock, reader, run folder) listens to the
layer's ``paint`` and ``set_data`` events, waits for the stroke to end, diffs the pixels against
the last state it measured and has :func:`napari_reddino.runs.corrections.apply_correction`
recompute the changed cells' rows in a worker: measures, kind, counted flag, morphology, the
vector (when the layer's backbone loads) and a map position next to its neighbors. Merge and
split (:class:`CorrectionPanel`, in the segmentation dock) write pixels through the layer's own
``data_setitem``, so napari's undo reverts them and the rows follow again.
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import QObject, QTimer, Signal
from qtpy.QtWidgets import QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_reddino import names as nm
from napari_reddino.plugin.layers import layer_features
from napari_reddino.plugin.session import LayerCells, SessionError, session_for
from napari_reddino.runs import corrections
from napari_reddino.widgets._counted import grey_not_counted

DELAY_MS = 300  # a brush stroke is many paint events: measure once it pauses
COORDS = nm.UMAP
_FOLLOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_WATCHED: weakref.WeakSet = weakref.WeakSet()


def _is_plugin_labels(layer: Any) -> bool:
    features = getattr(layer, "features", None)
    return (isinstance(layer, Labels) and features is not None and nm.LABEL in features.columns
            and bool(layer.metadata.get(nm.META_IMAGE_LAYER)))


class PaintFollower(QObject):
    """Keeps one Labels layer's ``features`` (and embeddings) true to its pixels."""

    updated = Signal(object)  # the runs.corrections.Correction applied

    def __init__(self, viewer: Any, layer: Labels) -> None:
        super().__init__()
        self.viewer, self.layer = viewer, layer
        self.measured = np.array(layer.data, copy=True)  # the pixels the rows describe
        self.original = self.measured.copy()  # as segmented: ``edited`` is relative to it
        self.busy, self.pending = False, False
        self.timer = QTimer(self)
        self.timer.setSingleShot(True)
        self.timer.setInterval(DELAY_MS)
        self.timer.timeout.connect(self.update)
        layer.events.paint.connect(self._schedule)
        layer.events.set_data.connect(self._schedule)

    def _schedule(self, *_: Any) -> None:
        self.timer.start()

    def reset(self) -> None:
        """The layer was segmented again: its pixels and rows are a new starting point."""
        self.timer.stop()
        self.measured = np.array(self.layer.data, copy=True)
        self.original = self.measured.copy()

    @property
    def idle(self) -> bool:
        return not (self.busy or self.pending or self.timer.isActive())

    def _pixels(self) -> np.ndarray | None:
        name = self.layer.metadata.get(nm.META_IMAGE_LAYER)
        layer = self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401
        if not isinstance(layer, Image):
            return None
        return np.asarray(layer.data[0] if layer.multiscale else layer.data)

    def update(self) -> None:
        """Measure what changed since the last update (one worker at a time)."""
        if self.busy:
            self.pending = True
            return
        after = np.array(self.layer.data, copy=True)
        if after.shape != self.measured.shape:  # segmented again: a new starting point
            self.measured, self.original = after, after.copy()
            return
        if not corrections.changed_ids(self.measured, after).size:
            return
        image = self._pixels()
        if image is None:
            show_warning(f"{self.layer.name}: its image layer is gone, so the corrected cells "
                         "cannot be measured; open the image again")
            return
        self.busy = True
        worker = _correct(self.layer.features.drop(columns=[nm.NAPARI_INDEX], errors="ignore"),
                          self.measured, after, image, dict(self.layer.metadata), self.original)
        worker.returned.connect(lambda result: self._apply(result, after))
        worker.errored.connect(self._failed)
        worker.start()

    def _failed(self, error: BaseException) -> None:
        self.busy = False
        show_warning(f"{self.layer.name}: the corrected cells could not be measured ({error})")

    def _apply(self, result: corrections.Correction, after: np.ndarray) -> None:
        self.busy = False
        self.measured = after
        session = session_for(self.viewer)
        gathered = session.layer_cells is not None and any(
            self.layer == layer for layer in session.layer_cells.layers)
        table = result.table
        if set(COORDS) <= set(table.columns):
            table = _placed(table, result)
        corrected = not np.array_equal(after, self.original)  # an undo back to the start: no
        extra = {} if result.embeddings is None else {nm.EMBEDDINGS_KEY: result.embeddings}
        self.layer.metadata = {**self.layer.metadata, **extra, nm.META_CORRECTED: corrected}
        self.layer.features = layer_features(table)
        grey_not_counted(self.layer, session.counted_only)
        if gathered:
            try:
                session.set_layer_cells(LayerCells.from_layers(self.viewer.layers))
            except SessionError:
                session.set_layer_cells(None)
        show_info(f"{self.layer.name}: {result.summary()}")
        self.updated.emit(result)
        if self.pending:
            self.pending = False
            self.update()


def _placed(table, result: corrections.Correction):
    """New and reshaped cells placed on the shown map beside their nearest neighbors."""
    from napari_reddino.explore.placement import place_points
    from napari_reddino.explore.spaces import resolve_space, space_matrix

    vectors = getattr(result.embeddings, "vectors", None)
    space = resolve_space(None, table, vectors)
    row_column = nm.EMBEDDING_ROW if nm.EMBEDDING_ROW in table.columns else None
    matrix = space_matrix(table, vectors, space, row_column=row_column)
    missing = table[nm.LABEL].isin(result.measured).to_numpy()
    coords = place_points(matrix, table[list(COORDS)].to_numpy(np.float32), missing)
    return table.assign(**{COORDS[0]: coords[:, 0], COORDS[1]: coords[:, 1]})


@thread_worker
def _correct(table, before, after, image, metadata, original):
    embeddings = metadata.get(nm.EMBEDDINGS_KEY)
    backbone = None
    if embeddings is not None and getattr(embeddings, "pooling", "") == "cls_crop":
        try:  # the vectors of changed cells come from the backbone that made the others
            from napari_reddino.runs.embed_smear import cached_backbone

            backbone = cached_backbone(str(embeddings.backbone), "auto")
        except Exception:  # offline or gone: the old vectors stay
            backbone = None
    return corrections.apply_correction(
        table, before, after, image, image_name=str(metadata.get(nm.META_IMAGE, "")),
        subject=str(metadata.get(nm.META_SUBJECT, "")),
        embeddings=embeddings if hasattr(embeddings, "vectors") else None,
        backbone=backbone, original=original)


def follow(viewer: Any, layer: Any) -> PaintFollower | None:
    """The follower of ``layer`` (made on first call); None for layers the plugin did not make."""
    if not _is_plugin_labels(layer):
        return None
    follower = _FOLLOWERS.get(layer)
    if follower is None:
        follower = _FOLLOWERS[layer] = PaintFollower(viewer, layer)
    return follower


def follow_plugin_layers(viewer: Any) -> None:
    """Follow every plugin Labels layer of ``viewer``, now and as they are added (idempotent)."""
    for layer in list(viewer.layers):
        follow(viewer, layer)
    if viewer.layers not in _WATCHED:
        _WATCHED.add(viewer.layers)
        viewer.layers.events.inserted.connect(lambda event: follow(viewer, event.value))


class CorrectionPanel(QGroupBox):
    """Merge or split cells by clicking them (a toggle), through napari's undoable edits."""

    def __init__(self, viewer: Any) -> None:
        super().__init__("Correct cells")
        self.viewer = viewer
        self.picks: list[tuple[Labels, int, tuple[int, int]]] = []
        self.pick_button = QPushButton("Pick cells")
        self.pick_button.setCheckable(True)
        self.pick_button.setToolTip("Then click cells on the image: two or more to merge, or "
                                    "two points inside one cell to split it between them")
        self.merge_button, self.split_button = QPushButton("Merge"), QPushButton("Split")
        self.clear_button = QPushButton("Clear")
        self.status = QLabel("Paint, erase or fill with napari's own tools: the cell table "
                             "follows (undo too).")
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        for button in (self.pick_button, self.merge_button, self.split_button, self.clear_button):
            row.addWidget(button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.status)
        self.merge_button.clicked.connect(self.merge)
        self.split_button.clicked.connect(self.split)
        self.clear_button.clicked.connect(self.clear)
        viewer.mouse_drag_callbacks.append(self._on_click)
        follow_plugin_layers(viewer)

    def _on_click(self, viewer: Any, event: Any) -> None:
        if self.pick_button.isChecked() and getattr(event, "button", 1) == 1:
            self.pick_at(event.position)

    def pick_at(self, world_position) -> int:
        """Pick the cell under a world position (what a click does); returns its label or 0."""
        for layer in reversed(list(self.viewer.layers)):
            if not (_is_plugin_labels(layer) and layer.visible):
                continue
            point = tuple(round(c) for c in layer.world_to_data(world_position)[-2:])
            inside = all(0 <= c < s for c, s in zip(point, layer.data.shape[-2:]))
            label = int(np.asarray(layer.data)[point]) if inside else 0
            if label:
                self.picks.append((layer, label, point))
                self._show_picks()
                return label
        return 0

    def _show_picks(self) -> None:
        cells = ", ".join(str(label) for _layer, label, _p in self.picks)
        self.status.setText(f"picked: {cells}" if cells else "nothing picked")

    def clear(self) -> None:
        self.picks = []
        self._show_picks()

    def _one_layer(self) -> Labels | None:
        layers = {id(layer): layer for layer, _l, _p in self.picks}
        if len(layers) != 1:
            show_warning("pick cells of one Labels layer (click them with 'Pick cells' on)")
            return None
        return next(iter(layers.values()))

    def merge(self) -> None:
        """Merge the picked cells into one (the smallest id), as one undoable edit."""
        layer = self._one_layer()
        if layer is None:
            return
        try:
            merged = corrections.merge_cells(np.asarray(layer.data),
                                             [label for _l, label, _p in self.picks])
        except ValueError as error:
            show_warning(str(error))
            return
        self._write(layer, merged)

    def split(self) -> None:
        """Split the one picked cell between the picked points (watershed), undoably."""
        layer = self._one_layer()
        if layer is None:
            return
        labels = {label for _l, label, _p in self.picks}
        if len(labels) != 1:
            show_warning("to split, pick two or more points inside one cell")
            return
        try:
            split = corrections.split_cell(np.asarray(layer.data), labels.pop(),
                                           [p for _l, _label, p in self.picks])
        except ValueError as error:
            show_warning(str(error))
            return
        self._write(layer, split)

    def _write(self, layer: Labels, new: np.ndarray) -> None:
        old = np.asarray(layer.data)
        changed = old != new
        with layer.block_history():  # one undo step for the whole merge or split
            for value in np.unique(new[changed]):
                where = np.nonzero(changed & (new == value))
                layer.data_setitem(where, int(value))
        self.clear()
