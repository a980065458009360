"""Hand corrections of a segmentation: only the cells a user changed are measured again.

A hematologist fixes a merged pair or a fragment with napari's own brush, eraser and fill, or
with merge and split. Whatever made the change, the labels before and after tell which cells
changed; their rows (region measures, kind, border flag, morphology, counted flag and, with a
backbone, their vectors) are recomputed from the whole image with only those cells in the
mask, so the numbers are the ones a full re-run would give, in a fraction of a second.
Erased cells lose their rows, new labels get rows. A manual class stays with its cell; when the
outline changed a lot (IoU below :data:`KEEP_CLASS_IOU`) the cell is flagged ``needs_review``.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm

KEEP_CLASS_IOU = 0.7  # an outline that kept this much of itself keeps its class unflagged
#: columns a user (or propagation) gave a cell: carried to its new row, never recomputed
USER_COLUMNS = (nm.SUBJECT, nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE, nm.EXCLUDED,
                nm.IMAGE_SHA256, nm.CLUSTER)


@dataclass
class Correction:
    """The cell table after a correction and what changed (label ids)."""

    table: pd.DataFrame
    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    reshaped: list[int] = field(default_factory=list)
    embeddings: object = None  # io.cell_table.CellEmbeddings in table order, when asked for

    @property
    def measured(self) -> list[int]:
        return sorted(self.added + self.reshaped)

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in (("new", self.added), ("changed", self.reshaped),
                                              ("removed", self.removed)) if v]
        return ", ".join(parts) if parts else "no cell changed"


def changed_ids(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """Label ids (> 0) that lost or gained a pixel between two label images."""
    before, after = np.asarray(before), np.asarray(after)
    if before.shape != after.shape:
        raise ValueError(f"labels changed shape: {before.shape} -> {after.shape}")
    diff = before != after
    ids = np.union1d(before[diff], after[diff])
    return ids[ids > 0].astype(np.int64)


def _iou(before: np.ndarray, after: np.ndarray, label: int) -> float:
    old, new = before == label, after == label
    union = np.count_nonzero(old | new)
    return np.count_nonzero(old & new) / union if union else 1.0


def measure_cells(labels: np.ndarray, image: np.ndarray, ids: Sequence[int], *,
                  image_name: str, subject: str = "",
                  pixel_size: float | None = None) -> pd.DataFrame:
    """The rows of ``ids`` as segmentation + morphology make them, measured on the whole image.

    Kinds are typed against the whole smear (its median cell and stain) and the stain features
    against its glass, as when it was segmented; the region measures see only the asked cells.
    """
    from napari_reddino.io.cell_table import region_features
    from napari_reddino.morphology.features import add_morphology
    from napari_reddino.segment.check import add_object_columns
    from napari_reddino.segment.kind import object_kinds

    labels = np.asarray(labels)
    rgb = np.asarray(image)[..., :3] if np.asarray(image).ndim == 3 else np.asarray(image)
    only = np.where(np.isin(labels, np.asarray(ids, dtype=labels.dtype)), labels, 0)
    table = region_features(only, rgb, image_name=image_name, subject=subject)
    if not len(table):
        return table
    kinds = object_kinds(labels, rgb)  # per label id over the whole smear
    table = add_object_columns(table, labels, rgb, kinds=kinds)
    # the stain features are relative to the glass around the cells: measured with every
    # cell in place (glass is where no cell is), then the asked rows kept
    return add_morphology(table, labels, rgb, pixel_size=pixel_size)


def apply_correction(table: pd.DataFrame, before: np.ndarray, after: np.ndarray,
                     image: np.ndarray, *, image_name: str, subject: str = "",
                     pixel_size: float | None = None, embeddings=None,
                     backbone=None, original: np.ndarray | None = None) -> Correction:
    """The table of ``after`` from the table of ``before``: changed cells measured again.

    ``embeddings`` (the ``CellEmbeddings`` that ``table["embedding_row"]`` points into) and
    ``backbone`` (a loaded backbone): the changed cells' vectors are computed again (CLS of a
    crop) and the returned embeddings follow the new table's order. ``original``: the labels as
    segmented; a cell is ``edited`` while it differs from them (an undo clears the flag).
    """
    from napari_reddino.segment.counted import add_counted

    ids = changed_ids(before, after)
    present = set(np.unique(after[np.isin(after, ids)]).tolist()) if len(ids) else set()
    known = set(table[nm.LABEL].astype(int)) if len(table) else set()
    removed = sorted(int(i) for i in ids if i not in present and i in known)
    reshaped = sorted(int(i) for i in ids if i in present and i in known)
    added = sorted(int(i) for i in ids if i in present and i not in known)
    result = Correction(table, added, removed, reshaped)
    if not len(ids):
        result.embeddings = embeddings
        return result
    kept = table[~table[nm.LABEL].astype(int).isin(ids)].copy()
    if result.measured:  # erased cells only lose their rows; the others are measured again
        measured = _measured_rows(table, before, after, image, result, image_name=image_name,
                                  subject=subject, pixel_size=pixel_size, original=original)
        for column in (nm.EDITED, nm.NEEDS_REVIEW):
            kept[column] = kept[column].fillna(False).astype(bool) if column in kept else False
        kept = pd.concat([kept, measured.reindex(
            columns=kept.columns.union(measured.columns, sort=False))], ignore_index=True)
    new = kept.sort_values(nm.LABEL, kind="stable").reset_index(drop=True)
    result.table = add_counted(new.drop(columns=[nm.COUNTED, nm.NOT_COUNTED_REASON],
                                        errors="ignore"))
    if embeddings is not None:
        result.embeddings, result.table = _follow_embeddings(
            result.table, table, embeddings, after, image, result.measured, backbone, image_name)
    return result


def _measured_rows(table, before, after, image, result: Correction, *, image_name: str,
                   subject: str, pixel_size, original) -> pd.DataFrame:
    """The new and reshaped cells' rows, with what a user gave them carried over."""
    measured = measure_cells(after, image, result.measured, image_name=image_name,
                             subject=subject, pixel_size=pixel_size)
    old = table.set_index(table[nm.LABEL].astype(int))
    for column in USER_COLUMNS:
        if column in old.columns:
            measured[column] = measured[nm.LABEL].map(old[column]).to_numpy()
    measured[nm.EDITED] = [original is None or not np.array_equal(original == i, after == i)
                           for i in measured[nm.LABEL]]
    flag = [i in result.reshaped and _iou(before, after, i) < KEEP_CLASS_IOU
            for i in measured[nm.LABEL]]
    has_class = measured[nm.CLASS].notna().to_numpy() if nm.CLASS in measured else False
    measured[nm.NEEDS_REVIEW] = np.asarray(flag, dtype=bool) & has_class
    return measured


def _follow_embeddings(new: pd.DataFrame, old: pd.DataFrame, embeddings, labels, image,
                       measured: list[int], backbone, image_name: str):
    """Embeddings in ``new``'s row order: old vectors kept, measured cells embedded again."""
    from napari_reddino.embed.per_cell import cell_embeddings
    from napari_reddino.io.cell_table import CellEmbeddings

    rows = dict(zip(old[nm.LABEL].astype(int), old[nm.EMBEDDING_ROW].astype(int))) \
        if nm.EMBEDDING_ROW in old.columns else {}
    fresh = {}
    if measured and backbone is not None:
        only = np.where(np.isin(labels, measured), labels, 0)
        done = cell_embeddings(image, only, backbone, pooling="cls_crop", image_name=image_name)
        fresh = dict(zip(done.label.tolist(), done.vectors))
    vectors = []
    for label in new[nm.LABEL].astype(int):
        if label in fresh:
            vectors.append(fresh[label])
        elif label in rows:  # unchanged, or reshaped with no backbone at hand: its old vector
            vectors.append(embeddings.vectors[rows[label]])
        else:  # a new cell and no backbone: no vector until it is embedded
            vectors.append(np.full(embeddings.dim, np.nan, dtype=np.float32))
    out = CellEmbeddings(np.stack(vectors) if vectors else np.zeros((0, embeddings.dim)),
                         np.full(len(new), image_name), new[nm.LABEL].to_numpy(np.int64),
                         embeddings.backbone, embeddings.pooling)
    return out, new.assign(**{nm.EMBEDDING_ROW: np.arange(len(new), dtype=np.int64)})


def corrected_cells(smear_folder: str | os.PathLike) -> int:
    """How many cells of a run's smear folder were corrected by hand (0: none, or no table);
    at least 1 when napari saved it as corrected (objects only erased leave no edited row)."""
    import json

    from napari_reddino.io.cell_table import load_table

    folder = Path(smear_folder)
    path = folder / nm.CELLS_TABLE_FILE
    if not path.is_file():
        return 0
    try:
        table = load_table(path, required=(nm.LABEL,))
        marker = json.loads((folder / nm.DONE_MARKER).read_text())
    except (OSError, ValueError):  # a damaged folder is redone anyway
        return 0
    edited = int(table[nm.EDITED].fillna(False).astype(bool).sum()) if nm.EDITED in table else 0
    return max(edited, int(bool(isinstance(marker, dict) and marker.get("corrected"))))


def corrected_smears(run_dir: str | os.PathLike) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``(image name, photo, corrected labels)`` of every smear of a run corrected by hand:
    what Cellpose is fine-tuned on (:mod:`..segment.finetune`)."""
    import json

    import imageio.v3 as iio
    import zarr

    from napari_reddino.runs.run_files import smear_source

    out = []
    for folder in sorted(p for p in (Path(run_dir) / "smears").glob("*") if p.is_dir()):
        if not corrected_cells(folder):
            continue
        marker = json.loads((folder / nm.DONE_MARKER).read_text())
        photo = smear_source(folder, marker)
        if photo is None:
            raise FileNotFoundError(f"{folder.name}: its image {marker.get('source')} is gone; "
                                    "put it back to train on this smear")
        labels = np.asarray(zarr.open_group(str(folder / nm.GRID_FILE), mode="r")["labels"][:])
        out.append((str(marker.get("image", folder.name)), iio.imread(photo), labels))
    return out


def merge_cells(labels: np.ndarray, ids: Sequence[int]) -> np.ndarray:
    """A copy of ``labels`` where the cells ``ids`` are one cell (the smallest id)."""
    ids = sorted({int(i) for i in ids if int(i) > 0})
    if len(ids) < 2:
        raise ValueError("click at least two cells to merge")
    missing = [i for i in ids if not (labels == i).any()]
    if missing:
        raise ValueError(f"no cell {missing} in the labels")
    out = np.array(labels, copy=True)
    out[np.isin(out, ids)] = ids[0]
    return out


def split_cell(labels: np.ndarray, label: int, seeds: Sequence[Sequence[float]]) -> np.ndarray:
    """A copy of ``labels`` with cell ``label`` split by a watershed from ``seeds`` (y, x).

    The first seed's part keeps ``label``; the others get new ids after the largest one.
    """
    from scipy import ndimage as ndi
    from skimage.segmentation import watershed

    mask = np.asarray(labels) == int(label)
    if not mask.any():
        raise ValueError(f"no cell {label} in the labels")
    points = [tuple(round(c) for c in seed) for seed in seeds]
    if len(set(points)) < 2:
        raise ValueError("click at least two points inside the cell to split it")
    markers = np.zeros(mask.shape, np.int32)
    for i, (y, x) in enumerate(points, start=1):
        if not (0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and mask[y, x]):
            raise ValueError(f"seed ({y}, {x}) is not inside cell {label}")
        markers[y, x] = i
    parts = watershed(-ndi.distance_transform_edt(mask), markers, mask=mask)
    return _relabel_parts(labels, label, parts)


def split_cell_by_line(labels: np.ndarray, label: int,
                       line: Sequence[Sequence[float]]) -> np.ndarray:
    """A copy of ``labels`` with cell ``label`` cut along a drawn polyline (y, x vertices)."""
    from scipy import ndimage as ndi
    from skimage.draw import line as draw_line
    from skimage.segmentation import watershed

    mask = np.asarray(labels) == int(label)
    if not mask.any():
        raise ValueError(f"no cell {label} in the labels")
    cut = np.zeros(mask.shape, bool)
    vertices = [tuple(round(c) for c in v) for v in line]
    for (y0, x0), (y1, x1) in itertools.pairwise(vertices):
        rr, cc = draw_line(y0, x0, y1, x1)
        keep = (rr >= 0) & (rr < mask.shape[0]) & (cc >= 0) & (cc < mask.shape[1])
        cut[rr[keep], cc[keep]] = True
    cut = ndi.binary_dilation(cut)  # a 1-px diagonal line leaks through 8-connected pixels
    pieces, n = ndi.label(mask & ~cut)
    if n < 2:
        raise ValueError(f"the line does not cut cell {label} in two: draw it across the cell")
    parts = watershed(-ndi.distance_transform_edt(mask), pieces, mask=mask)
    return _relabel_parts(labels, label, parts)


def _relabel_parts(labels: np.ndarray, label: int, parts: np.ndarray) -> np.ndarray:
    out = np.array(labels, copy=True)
    sizes = np.bincount(parts.ravel())
    order = [p for p in np.argsort(-sizes) if p > 0 and sizes[p] > 0]
    next_id = int(out.max()) + 1
    for rank, part in enumerate(order):
        out[parts == part] = int(label) if rank == 0 else next_id + rank - 1
    return out
