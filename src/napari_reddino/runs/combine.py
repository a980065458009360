"""Combine a run's finished smears: one table and matrix, a map, clusters, batch metrics, files.

Each step makes one result and can be checked on its own; :func:`iter_combine` is their
sequence. Needs no dask: the CLI runs it in its own process after (or without) a batch. The
class labels of an existing combined table are carried onto the new one cell by cell, and those
that cannot be carried are written out, never dropped.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    check_smear_outputs,
    invalidate,
    load_smear_cells,
    smear_dir,
)
from napari_reddino.runs.run_files import read_summary  # noqa: F401  (re-exported)

# the combined table, matrix and summary are nm.CELLS_TABLE_FILE, EMBEDDINGS_FILE, SUMMARY_FILE
METRICS_TABLE = "batch_metrics.csv"
NOT_CARRIED_FILE = "labels_not_carried.csv"


@dataclass
class Combined:
    """The combined result of a batch: one table, one matrix, batch-effect metrics."""

    table: pd.DataFrame
    embeddings: object  # cells.CellEmbeddings
    metrics: pd.DataFrame
    summary: dict
    warnings: list[str] = field(default_factory=list)  # what the user must hear (CLI prints)


def finished_smears(out_dir: str | os.PathLike, images: list[str] | None = None) -> list[Path]:
    """Folders of finished smears under ``out_dir`` (restricted to ``images`` if given)."""
    root = Path(out_dir) / "smears"
    if images is not None:
        folders = [smear_dir(out_dir, name) for name in images]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [f for f in folders if (f / DONE_MARKER).is_file()]


def usable_smears(out_dir: Path, images: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """Finished folders whose files are sound, and a warning per damaged one (whose marker is
    removed, so the next ``embed`` / ``run`` redoes it). None usable is an error."""
    folders, warnings = [], []
    for folder in finished_smears(out_dir, images):
        problem = check_smear_outputs(folder)
        if problem is None:
            folders.append(folder)
            continue
        invalidate(folder)
        warnings.append(f"smear folder {folder.name} left out: {problem}; rerun `napari-reddino "
                        "run` (or `embed`) on its image to redo it")
    if not folders:
        raise ValueError(f"{out_dir}: no finished smears to combine"
                         + (f" ({'; '.join(warnings)})" if warnings else ""))
    return folders, warnings


def stack_smears(parts) -> tuple[pd.DataFrame, object]:
    """``(table, CellEmbeddings)`` per smear -> one table and one matrix; each table's
    ``embedding_row`` is shifted by the rows of the smears before it."""
    from napari_reddino.io.cell_table import CellEmbeddings, concat_tables

    tables, offset = [], 0
    for table, embeddings in parts:
        table = table.copy()
        table[nm.EMBEDDING_ROW] = table[nm.EMBEDDING_ROW].to_numpy() + offset
        offset += len(embeddings.label)
        tables.append(table)
    table = concat_tables(tables).reset_index(drop=True)
    return table, CellEmbeddings.concat([embeddings for _table, embeddings in parts])


def feature_matrix(table: pd.DataFrame, embeddings, features: str | None) -> tuple[str, np.ndarray]:
    """The feature space the map and clusters use (``features``, else the best the cells
    allow) and the cells' matrix in it."""
    from napari_reddino.explore.spaces import resolve_space, space_matrix

    space = resolve_space(features, table, embeddings.vectors)
    return space, space_matrix(table, np.asarray(embeddings.vectors, dtype=np.float32), space)


def map_method(n: int, projection: str) -> tuple[str, str]:
    """The projection ``n`` cells allow (UMAP needs more than 15) and a warning if not asked."""
    method = projection if n > 15 else "pca"
    if method == projection:
        return method, ""
    return method, (f"only {n} cells: the map is a PCA instead of {projection} (which needs "
                    "more than 15 cells)")


def cluster_note(asked: int, allowed: int, n: int) -> str:
    """Why fewer clusters were made than asked for (empty when none)."""
    if allowed == asked:
        return ""
    return (f"{allowed} clusters instead of the {asked} asked for: {n} cells allow at most one "
            "cluster per 5 cells")


def batch_report(vectors: np.ndarray, table: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Per-subject batch metrics and their summary; with one subject, say so instead."""
    from napari_reddino.explore.batch_effects import batch_metrics

    subjects = table["subject"].astype(str).to_numpy()
    if len(set(subjects)) < 2:
        return pd.DataFrame(), {"batch_metrics": "needs at least 2 subjects"}
    classes = table[nm.CLASS].astype(str).to_numpy() if nm.CLASS in table.columns else None
    k = int(min(DEFAULTS.batch_k, len(subjects) - 1))
    report = batch_metrics(vectors, subjects, classes, k=k)
    return report.per_subject.reset_index(names="subject"), dict(report.summary)


def previous_labels(path: Path) -> pd.DataFrame | None:
    """The class columns of an existing combined table (None if it has no classes yet)."""
    from napari_reddino.io.cell_table import load_table

    if not path.is_file():
        return None
    try:
        table = load_table(path)
    except Exception as exc:  # never overwrite labels we could not read
        raise ValueError(f"{path} exists but cannot be read ({exc}); it may hold labels: move "
                         "it away before combining again") from exc
    if nm.CLASS not in table.columns or table[nm.CLASS].isna().all():
        return None
    for column, empty in ((nm.CLASS_SOURCE, None), (nm.CONFIDENCE, np.nan)):
        if column not in table.columns:
            table[column] = empty
    return table


def carry_labels(table: pd.DataFrame, previous: pd.DataFrame, out_dir: Path):
    """Copy class, class_source, confidence of the previous combined table onto the new one.

    Labels whose cell is gone or moved are written to ``labels_not_carried.csv`` (never lost).
    """
    from napari_reddino.label.files import export_labels, merge_labels

    result = merge_labels(table, previous)
    left = pd.concat([result.missing, result.moved.drop(columns="distance", errors="ignore")])
    if not len(left):
        return result.table, ""
    path = export_labels(left, out_dir / NOT_CARRIED_FILE)
    return result.table, (f"{len(left)} labeled cell(s) of the previous {nm.CELLS_TABLE_FILE} are "
                          f"not in the new combined table (smear redone or left out); kept in "
                          f"{path}")


def write_combined(out_dir: Path, combined: Combined) -> None:
    """Write the cells (table, matrix, AnnData: one stamp), the metrics and the summary of a
    combined run, all or none: a failed write leaves every previous file as it was."""
    from napari_reddino.io.atomic import replacing_all
    from napari_reddino.runs.anndata_io import write_run_cells

    metrics, summary = out_dir / METRICS_TABLE, out_dir / nm.SUMMARY_FILE
    with replacing_all({metrics: "batch metrics", summary: "run summary"}) as tmp:
        combined.metrics.to_csv(tmp[metrics], index=False)
        tmp[summary].write_text(json.dumps(combined.summary, indent=1, default=_json_default))
        write_run_cells(out_dir, combined.table, combined.embeddings,
                        projection=str(combined.summary.get("projection", "")),
                        summary=combined.summary)


def _json_default(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def iter_combine(
    out_dir: str | os.PathLike,
    *,
    images: list[str] | None = None,
    projection: str = DEFAULTS.map_method,
    n_clusters: int = DEFAULTS.n_clusters,
    random_state: int = DEFAULTS.random_state,
    features: str | None = DEFAULTS.space,
    cancel: threading.Event | None = None,
    counted_only: bool = DEFAULTS.counted_only,
) -> ProgressGen[Combined]:
    """Combine finished smears, add ``umap_0/umap_1`` and ``cluster``, compute batch metrics.

    Writes ``cells.parquet``, ``embeddings.npz``, ``cells.h5ad`` (one stamp),
    ``batch_metrics.csv`` and ``summary.json``.
    ``features`` is the space map and clusters are made in (``explore.spaces``; the default
    space falls back to the embedding for cells without morphology). The table gets the
    ``counted`` / ``not_counted_reason`` columns; map, clusters and metrics are made of the
    counted cells (every object with ``counted_only=False``), the rest get NaN and cluster -1.
    """
    from napari_reddino.explore.analysis import Settings, iter_clusters, iter_map, on_rows
    from napari_reddino.label.counting import counted_rows
    from napari_reddino.segment.counted import add_counted

    out_dir = Path(out_dir)
    previous = previous_labels(out_dir / nm.CELLS_TABLE_FILE)  # unreadable: stop before any work
    folders, warnings = usable_smears(out_dir, images)
    total = len(folders) + 3
    parts = []
    for i, folder in enumerate(folders):
        check_cancel(cancel)
        parts.append(load_smear_cells(folder))  # the grids and labels stay on disk
        yield Progress(i + 1, total, f"read {folder.name}")
    table, embeddings = stack_smears(parts)
    table = add_counted(table)
    space, vectors = feature_matrix(table, embeddings, features)
    rows = counted_rows(table, counted_only)
    vectors, n = vectors[rows], int(rows.sum())
    if n < 3:
        raise ValueError(f"{out_dir}: only {n} cells counted of {len(table)} objects, too few "
                         "to project or cluster" + ("; --all-objects uses every object"
                                                   if counted_only else ""))
    method, note = map_method(n, projection)
    warnings += [note] if note else []
    yield Progress(len(folders), total, f"{method} of {n} cells")
    settings = Settings(n_clusters=n_clusters, random_state=random_state).for_cells(n)
    coords = yield from iter_map(vectors, method, settings, cancel)  # the explorer's settings
    coords = on_rows(coords, rows, np.nan)
    table[nm.UMAP[0]], table[nm.UMAP[1]] = coords[:, 0], coords[:, 1]
    check_cancel(cancel)
    yield Progress(len(folders) + 1, total, "clustering")
    k = settings.n_clusters  # at most one cluster per 5 cells, as in the explorer
    note = cluster_note(n_clusters, k, n)
    warnings += [note] if note else []
    clusters = yield from iter_clusters(vectors, DEFAULTS.cluster_method, settings, cancel)
    table[nm.CLUSTER] = on_rows(clusters, rows, -1)
    check_cancel(cancel)
    yield Progress(len(folders) + 2, total, "batch-effect metrics")
    metrics, summary = batch_report(vectors, table[rows])
    summary.update({"n_cells": len(table), "n_counted": n, "n_images": len(folders),
                    "projection": method,
                    "n_clusters": k, "feature_space": space, **_made_with(settings, embeddings)})
    summary["n_subjects"] = int(table["subject"].nunique())
    if previous is not None:
        table, note = carry_labels(table, previous, out_dir)
        warnings += [note] if note else []
    summary["warnings"] = warnings
    combined = Combined(table, embeddings, metrics, summary, warnings)
    write_combined(out_dir, combined)
    yield Progress(total, total, f"combined {len(table)} objects, {n} counted")
    return combined


def _made_with(settings, embeddings) -> dict:
    """The settings behind the stored map and clusters (AnnData's ``uns["reddino"]``)."""
    from napari_reddino.embed.backbones import weights_identity

    return {"n_neighbors": int(settings.n_neighbors), "metric": str(settings.metric),
            "random_state": int(settings.random_state),
            "cluster_method": str(DEFAULTS.cluster_method),
            "weights_identity": (weights_identity(embeddings.backbone)
                                 if embeddings.backbone else "")}


def combine(out_dir, **kwargs) -> Combined:
    """Sync wrapper of :func:`iter_combine`."""
    return run_to_completion(iter_combine(out_dir, **kwargs))
