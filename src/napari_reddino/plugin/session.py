"""One cell table over every embedded Labels layer of a viewer (GUI-free).

The explorer and labeling docks work on *all* loaded smears at once. A Labels layer
takes part when it carries a ``features`` table with a ``label`` column and an embedding
matrix in ``metadata["reddino_embeddings"]`` (a ``cells.CellEmbeddings`` or an
(N, D) array; ``features["embedding_row"]`` points into it). :class:`LayerCells`
concatenates them into one table + one matrix keyed by (image, label), maps its row
indices back to (layer, labels) and writes new columns back into each layer's
``features``. :class:`SharedSession` (one per viewer, :func:`session_for`) is how the
docks find each other: the gathered cells (``layer_cells``), the current selection, the one
"counted cells only" switch (so every dock counts the same cells) and psygnal events. No Qt here.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from psygnal import Signal

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.names import EMBEDDING_ROW, EMBEDDINGS_KEY
from napari_reddino.segment.counted import add_counted

ORIGIN_COLUMNS = ("_layer", "_row")  # which layer and row each cell came from; never written back
COUNTED_INPUTS = {nm.EXCLUDED, nm.KIND, nm.AREA, nm.TOUCHES_BORDER}  # what decides ``counted``


class SessionError(ValueError):
    """Layers cannot be gathered (no embedded cells, mismatching embeddings...)."""


def _embedding_vectors(embeddings: Any) -> np.ndarray:
    vectors = getattr(embeddings, "vectors", embeddings)
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2:
        raise SessionError(f"embeddings must be an (N, D) matrix, got shape {vectors.shape}")
    return vectors


def is_embedded_labels(layer: Any) -> bool:
    """True for a Labels layer that has per-cell features and an embedding matrix."""
    features = getattr(layer, "features", None)
    metadata = getattr(layer, "metadata", None) or {}
    return (
        layer.__class__.__name__ == "Labels"  # napari hands plugins proxies of its layers
        and isinstance(features, pd.DataFrame)
        and "label" in features.columns
        and len(features) > 0
        and metadata.get(EMBEDDINGS_KEY) is not None
    )


def _layer_rows(layer: Any) -> tuple[pd.DataFrame, np.ndarray]:
    """The layer's features (with `image`) and the embedding row of each of them."""
    features = layer.features
    embeddings = layer.metadata[EMBEDDINGS_KEY]
    vectors = _embedding_vectors(embeddings)
    if EMBEDDING_ROW in features.columns:
        rows = features[EMBEDDING_ROW].to_numpy()
    elif hasattr(embeddings, "rows_for"):
        image = layer.metadata.get("image", layer.name)
        rows = embeddings.rows_for(image, features["label"].to_numpy())
    elif len(vectors) == len(features):
        rows = np.arange(len(features))
    else:
        raise SessionError(
            f"layer {layer.name!r}: {len(features)} cells but {len(vectors)} embeddings and no "
            "'embedding_row' column to match them"
        )
    rows = np.asarray(pd.to_numeric(pd.Series(rows), errors="coerce").fillna(-1), dtype=np.int64)
    if rows.max(initial=-1) >= len(vectors):
        raise SessionError(
            f"layer {layer.name!r}: 'embedding_row' points past the {len(vectors)} embeddings"
        )
    table = features.copy()
    if "image" not in table.columns:
        table["image"] = layer.metadata.get("image", layer.name)
    return table, rows


@dataclass
class LayerCells:
    """All embedded cells of several Labels layers as one table + one matrix.

    ``table`` row ``i`` and ``vectors[i]`` describe the same cell; ``table["_layer"]``
    is the index into ``layers`` and ``table["_row"]`` the row in that layer's features.
    """

    layers: list[Any]
    table: pd.DataFrame
    vectors: np.ndarray
    skipped: int = 0  # cells without an embedding, left out
    sources: list[Any] = field(default_factory=list, repr=False)  # embeddings' fingerprints
    _key_index: dict[tuple[str, int], int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_layers(cls, layers: Iterable[Any]) -> LayerCells:
        """Gather every embedded Labels layer in ``layers`` (others are ignored)."""
        chosen = [layer for layer in layers if is_embedded_labels(layer)]
        if not chosen:
            raise SessionError(
                "no Labels layer with cell features and embeddings: segment the smear, then "
                "run the embedding dock (it stores metadata['reddino_embeddings'])"
            )
        tables, blocks, skipped = [], [], 0
        dims = set()
        for layer_index, layer in enumerate(chosen):
            table, rows = _layer_rows(layer)
            keep = rows >= 0
            skipped += int((~keep).sum())
            vectors = _embedding_vectors(layer.metadata[EMBEDDINGS_KEY])
            dims.add(vectors.shape[1])
            part = table.loc[keep].copy()
            part["_layer"] = layer_index
            part["_row"] = np.flatnonzero(keep)
            tables.append(part)
            blocks.append(vectors[rows[keep]])
        if len(dims) > 1:
            raise SessionError(
                f"embeddings of different sizes {sorted(dims)}: embed every smear with the "
                "same backbone before exploring them together"
            )
        table = pd.concat(tables, ignore_index=True)
        for name in ("image", "subject"):
            if name in table.columns:
                table[name] = table[name].astype(str)
        cells = cls(chosen, table, np.concatenate(blocks).astype(np.float32), skipped,
                    [_fingerprint(layer.metadata[EMBEDDINGS_KEY]) for layer in chosen])
        cells._key_index = {
            (img, int(lab)): i
            for i, (img, lab) in enumerate(zip(table["image"], table["label"], strict=True))
        }
        if len(cells._key_index) != len(table):
            raise SessionError(
                "two cells share the same (image, label): give each smear a distinct image name"
            )
        return cells

    def __len__(self) -> int:
        return len(self.table)

    def layer_index(self, layer: Any) -> int:
        for i, candidate in enumerate(self.layers):
            if candidate == layer:  # a layer, or napari's proxy of it
                return i
        raise SessionError(f"layer {getattr(layer, 'name', layer)!r} is not among the gathered "
                           "layers")

    def indices_for(self, layer: Any, labels: Sequence[int] | np.ndarray) -> np.ndarray:
        """Row indices of ``labels`` of ``layer`` (labels without a cell are dropped)."""
        part = self.table["_layer"].to_numpy() == self.layer_index(layer)
        hit = part & np.isin(self.table["label"].to_numpy(), np.asarray(labels, dtype=np.int64))
        return np.flatnonzero(hit)

    def indices_for_keys(self, images: Sequence[str], labels: Sequence[int]) -> np.ndarray:
        """Row per (image, label) key, -1 where no such cell exists."""
        return np.array(
            [self._key_index.get((str(i), int(lab)), -1) for i, lab in zip(images, labels)],
            dtype=np.int64,
        )

    def labels_by_layer(self, indices: Sequence[int] | np.ndarray) -> dict[int, np.ndarray]:
        """Group row indices into {layer index: labels} (every gathered layer present)."""
        indices = np.asarray(indices, dtype=np.int64)
        layer_of = self.table["_layer"].to_numpy()[indices]
        labels = self.table["label"].to_numpy()[indices]
        return {i: labels[layer_of == i] for i in range(len(self.layers))}

    def write_columns(self, columns: dict[str, Any], indices: np.ndarray | None = None) -> None:
        """Set columns on the combined table and in every layer's ``features`` (one event each).

        ``indices`` limits the update to these rows; other rows keep their value
        (a new column starts missing there).
        """
        rows = np.arange(len(self.table)) if indices is None else np.asarray(indices, np.int64)
        for name, values in columns.items():
            values = np.full(len(rows), values) if np.isscalar(values) else np.asarray(values)
            if len(values) != len(rows):
                raise SessionError(f"column {name!r}: {len(values)} values for {len(rows)} cells")
            _set_rows(self.table, rows, name, values)
        layer_of = self.table["_layer"].to_numpy()[rows]
        for layer_index, layer in enumerate(self.layers):
            mine = rows[layer_of == layer_index]
            if mine.size == 0 and set(columns) <= set(layer.features.columns):
                continue
            features = layer.features.copy()
            target = features.index[self.table["_row"].to_numpy()[mine]]
            for name in columns:
                if name not in features.columns:  # every gathered layer gets the column
                    features[name] = self.table[name].iloc[:0].reindex(features.index)
                _set_rows(features, target, name, self.table[name].to_numpy()[mine])
            layer.features = features

    def refresh(self) -> None:
        """Re-read every column from the layers (after someone else edited ``features``)."""
        for layer_index, layer in enumerate(self.layers):
            part = self.table["_layer"].to_numpy() == layer_index
            source = layer.features.iloc[self.table.loc[part, "_row"].to_numpy()]
            for name in source.columns:
                _set_rows(self.table, np.flatnonzero(part), name, source[name].to_numpy())

    def is_current(self) -> bool:
        """False once a gathered layer lost its embeddings or its cells changed (segmented
        again): the rows would point at other cells, or past the end."""
        layer_of = self.table["_layer"].to_numpy()
        for layer_index, layer in enumerate(self.layers):
            if not is_embedded_labels(layer):
                return False
            part = layer_of == layer_index
            rows = self.table["_row"].to_numpy()[part]
            labels = layer.features["label"].to_numpy()
            if len(rows) and (rows.max() >= len(labels) or not np.array_equal(
                    labels[rows], self.table["label"].to_numpy()[part])):
                return False
        return True

    def outdated(self) -> bool:
        """True once a gathered layer holds columns or embeddings this table lacks."""
        columns = set(self.table.columns)
        return any(not set(layer.features.columns) <= columns
                   or _fingerprint(layer.metadata.get(EMBEDDINGS_KEY)) != self.sources[i]
                   for i, layer in enumerate(self.layers))

    def update_counted(self) -> bool:
        """Recompute ``counted`` / ``not_counted_reason`` (a kind, an area or an ``excluded``
        flag may have changed); writes them to the layers only when they differ."""
        fresh = add_counted(self.table)
        columns = {name: fresh[name].to_numpy() for name in (nm.COUNTED, nm.NOT_COUNTED_REASON)}
        if all(name in self.table.columns and np.array_equal(
                self.table[name].to_numpy(), values) for name, values in columns.items()):
            return False
        self.write_columns(columns)
        return True

    def public_table(self) -> pd.DataFrame:
        """The combined table without the bookkeeping columns."""
        return self.table.drop(columns=list(ORIGIN_COLUMNS))


def _fingerprint(embeddings: Any) -> tuple | None:
    """What tells one embedding matrix from the next: napari hands plugins a new proxy on every
    metadata read, so identity cannot; shape, dtype and a checksum of the first rows can."""
    if embeddings is None:
        return None
    vectors = np.asarray(_embedding_vectors(embeddings))
    return vectors.shape, vectors.dtype.str, float(np.asarray(vectors[:64], np.float64).sum())


def _set_rows(table: pd.DataFrame, rows: Any, name: str, values: np.ndarray) -> None:
    """``table.loc[rows, name] = values``, creating the column and un-categorizing it."""
    if name in table.columns and isinstance(table[name].dtype, pd.CategoricalDtype):
        table[name] = table[name].astype(object)
    table.loc[rows, name] = values


class SharedSession:
    """What the explorer and labeling docks of one viewer share: gathered cells + selection."""

    layer_cells_changed = Signal(object)  # the new LayerCells (or None)
    selection_changed = Signal(object)  # np.ndarray of LayerCells row indices
    columns_changed = Signal(object)  # list of column names written
    counted_only_changed = Signal(bool)  # the docks' one "Counted cells only" switch

    def __init__(self) -> None:
        self.layer_cells: LayerCells | None = None  # the gathered cells of the viewer
        self.selection = np.empty(0, dtype=np.int64)
        self.class_colors: dict[str, str] = {}  # set by the labeling dock, used to color plots
        self.counted_only = DEFAULTS.counted_only

    def set_counted_only(self, on: bool) -> None:
        if bool(on) != self.counted_only:
            self.counted_only = bool(on)
            self.counted_only_changed.emit(self.counted_only)

    def used_mask(self) -> np.ndarray:
        """Which gathered cells counts, propagation, review, suggestions and the map use:
        the counted ones while the switch is on, every object otherwise."""
        if self.layer_cells is None:
            return np.zeros(0, bool)
        table = self.layer_cells.table
        if not self.counted_only or nm.COUNTED not in table.columns:
            return np.ones(len(table), bool)
        return table[nm.COUNTED].fillna(False).astype(bool).to_numpy()

    def counted_summary(self) -> str:
        """"N of M objects counted" over the gathered cells ("" when there are none)."""
        if self.layer_cells is None:
            return ""
        table = self.layer_cells.table
        counted = (table[nm.COUNTED].fillna(False).astype(bool).sum()
                   if nm.COUNTED in table.columns else len(table))
        return f"{int(counted)} of {len(table)} objects counted"

    def set_layer_cells(self, layer_cells: LayerCells | None) -> None:
        for layer in [] if self.layer_cells is None else self.layer_cells.layers:
            for event in _layer_events(layer):
                event.disconnect(self._check_layer_cells)
        if layer_cells is not None:
            layer_cells.update_counted()  # older tables and hand edits get current columns
        self.layer_cells = layer_cells
        self.selection = np.empty(0, dtype=np.int64)
        for layer in [] if layer_cells is None else layer_cells.layers:
            for event in _layer_events(layer):
                event.connect(self._check_layer_cells)
        self.layer_cells_changed.emit(layer_cells)

    def _check_layer_cells(self, event: Any = None) -> None:
        """A gathered layer changed under it (segmented again): drop the stale cells, so
        no dock indexes cells that are gone; the explorer's Refresh gathers the new cells.
        A layer that got new columns or embeddings (embedded again, morphology measured) is
        gathered again, so the docks offer and use what the cells now have."""
        if self.layer_cells is None:
            return
        if not self.layer_cells.is_current():
            self.set_layer_cells(None)
        elif getattr(event, "type", "") == "features" and self.layer_cells.outdated():
            try:
                self.set_layer_cells(LayerCells.from_layers(self.layer_cells.layers))
            except SessionError:
                self.set_layer_cells(None)

    def select(self, indices: Sequence[int] | np.ndarray) -> None:
        indices = np.unique(np.asarray(indices, dtype=np.int64))
        if np.array_equal(indices, self.selection):
            return
        self.selection = indices
        self.selection_changed.emit(indices)

    def write_columns(self, columns: dict[str, Any], indices: np.ndarray | None = None) -> None:
        if self.layer_cells is None:
            raise SessionError("no cells loaded: press Refresh in the explorer dock first")
        self.layer_cells.write_columns(columns, indices)
        written = list(columns)
        if set(written) & COUNTED_INPUTS and self.layer_cells.update_counted():
            written += [nm.COUNTED, nm.NOT_COUNTED_REASON]
        self.columns_changed.emit(written)


def _layer_events(layer: Any) -> list:
    events = getattr(layer, "events", None)
    return [getattr(events, name) for name in ("data", "features", "metadata")
            if hasattr(events, name)]


_SESSIONS: weakref.WeakValueDictionary[int, SharedSession] = weakref.WeakValueDictionary()


def session_for(viewer: Any) -> SharedSession:
    """The one :class:`SharedSession` of ``viewer`` (created on first use).

    Keyed by ``hash(viewer)`` (a napari viewer hashes by identity): napari hands each dock
    its own public-only proxy of the viewer, another object that hashes as the viewer.
    Held weakly: it lives while a dock holds it, and that dock's viewer with it, so no other
    viewer can take the key meanwhile.
    """
    key = hash(viewer)
    session = _SESSIONS.get(key)
    if session is None:
        session = _SESSIONS[key] = SharedSession()
    return session
