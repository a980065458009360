"""dask.distributed execution of the per-smear pipeline over many smears, then one combine step.

One task per smear (:func:`napari_reddino.runs.pipeline.run_smear_file`), on a ``LocalCluster`` of
single-threaded worker processes or on an existing scheduler. Each task writes its own folder
and done marker, so a rerun after a crash (of a worker or of the whole run) only does what is
missing; a smear that fails is recorded in ``failures.csv`` and the others carry on. The pooled
table, UMAP, clusters and batch metrics are computed once at the end, in the client process.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from napari_reddino.runs.pipeline import (
    DONE_MARKER,
    PipelineConfig,
    SmearStatus,
    check_smear_outputs,
    invalidate,
    load_smear_outputs,
    run_smear_file,
    smear_dir,
)

POOLED_TABLE = "cells.parquet"
POOLED_EMBEDDINGS = "embeddings.npz"
RUNS_TABLE = "runs.csv"
FAILURES_TABLE = "failures.csv"
METRICS_TABLE = "batch_metrics.csv"
SUMMARY_FILE = "summary.json"


def gpu_count() -> int:
    """Number of CUDA devices this process sees (0 without torch.cuda)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:
        return 0


def start_client(
    n_workers: int | None = None,
    *,
    scheduler: str | None = None,
    threads_per_worker: int = 1,
    dashboard_address: str | None = None,
):
    """A dask ``Client``: to ``scheduler`` if given, else to a new ``LocalCluster``.

    Local workers are processes with ``threads_per_worker`` threads each (torch and BLAS are
    capped to it, so workers do not fight for cores). With CUDA devices, each local worker
    advertises a ``GPU`` resource and smear tasks ask for one, so one smear runs per GPU.
    The dashboard listens on ``dashboard_address`` (default: any free port).
    """
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            return Client(scheduler, timeout="20s")
        except OSError as exc:
            raise ConnectionError(f"cannot reach dask scheduler {scheduler!r}: {exc}") from exc
    gpus = gpu_count()
    if n_workers is None:
        n_workers = gpus or max(1, (os.cpu_count() or 1) // max(1, threads_per_worker))
    threads = str(threads_per_worker)
    cluster = LocalCluster(
        n_workers=int(n_workers),
        threads_per_worker=threads_per_worker,
        processes=True,
        dashboard_address=dashboard_address or ":0",  # a free port: never clash with 8787
        silence_logs=logging.ERROR,
        resources={"GPU": 1} if gpus else None,
        env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    )
    return Client(cluster)


def _smear_task(path: str, out_dir: str, config: PipelineConfig, subject: str, threads: int):
    """Runs on a worker: pick this worker's GPU (if any) and process one smear."""
    if config.device == "auto" and gpu_count() > 1:
        from dataclasses import replace

        from distributed import get_worker

        digits = "".join(ch for ch in str(get_worker().name) if ch.isdigit()) or "0"
        config = replace(config, device=f"cuda:{int(digits) % gpu_count()}")
    return run_smear_file(path, out_dir, config, subject=subject, threads=threads)


@dataclass
class BatchResult:
    """One row per smear: ``image, subject, source, status, n_cells, seconds, error``."""

    runs: pd.DataFrame

    @property
    def failures(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "failed"].reset_index(drop=True)

    def count(self, status: str) -> int:
        return int((self.runs["status"] == status).sum())


def iter_run_batch(
    images: list[Path],
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    *,
    subjects: dict[str, str] | None = None,
    client=None,
    n_workers: int | None = None,
    scheduler: str | None = None,
    retries: int = 1,
    cancel: threading.Event | None = None,
) -> ProgressGen[BatchResult]:
    """Process every smear as one dask task; write ``runs.csv`` and ``failures.csv``.

    Pass ``client`` to reuse one; otherwise one is started (and closed) here.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    subjects = subjects or {}
    own_client = client is None
    if own_client:
        yield Progress(0, len(images), "starting dask workers")
        client = start_client(n_workers, scheduler=scheduler)
    try:
        statuses = yield from _iter_submit(
            client, images, out_dir, config, subjects, retries, cancel
        )
    finally:
        if own_client:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
    runs = pd.DataFrame([s.as_row() for s in statuses])
    runs.to_csv(out_dir / RUNS_TABLE, index=False)
    result = BatchResult(runs)
    result.failures.to_csv(out_dir / FAILURES_TABLE, index=False)
    return result


def _iter_submit(client, images, out_dir, config, subjects, retries, cancel):
    from distributed import as_completed

    threads = 1  # torch threads per task: one task per worker thread, no oversubscription
    workers = client.scheduler_info(n_workers=-1).get("workers", {})
    wants_gpu = any("GPU" in (w.get("resources") or {}) for w in workers.values())
    futures = {}
    for path in images:
        subject = subjects.get(path.name, "unknown")
        future = client.submit(
            _smear_task,
            str(path),
            str(out_dir),
            config,
            subject,
            threads,
            key=f"smear-{path.name}-{uuid.uuid4().hex[:8]}",
            pure=False,
            retries=retries,
            resources={"GPU": 1} if wants_gpu else None,
        )
        futures[future] = SmearStatus(path.name, subject, str(path), "failed")
    statuses = []
    yield Progress(0, len(futures), f"{len(futures)} smears submitted")
    try:
        for future in as_completed(futures):
            check_cancel(cancel)
            if future.status == "finished":
                status = future.result()
            else:  # raised after its retries, or its worker died too often (KilledWorker)
                status = futures[future]
                exc = future.exception()
                status.error = f"{type(exc).__name__}: {exc}"
            statuses.append(status)
            yield Progress(len(statuses), len(futures), f"{status.image}: {status.status}")
    finally:
        client.cancel(list(futures))
    return sorted(statuses, key=lambda s: s.image)


def run_batch(images, out_dir, config, **kwargs) -> BatchResult:
    """Sync wrapper of :func:`iter_run_batch`."""
    return run_to_completion(iter_run_batch(images, out_dir, config, **kwargs))


def finished_smears(out_dir: str | os.PathLike, images: list[str] | None = None) -> list[Path]:
    """Folders of finished smears under ``out_dir`` (restricted to ``images`` if given)."""
    root = Path(out_dir) / "smears"
    if images is not None:
        folders = [smear_dir(out_dir, name) for name in images]
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    return [f for f in folders if (f / DONE_MARKER).is_file()]


@dataclass
class Combined:
    """The pooled result of a batch: one table, one matrix, batch-effect metrics."""

    table: pd.DataFrame
    embeddings: object  # cells.CellEmbeddings
    metrics: pd.DataFrame
    summary: dict
    warnings: list[str] = field(default_factory=list)  # what the user must hear (CLI prints)


def iter_combine(
    out_dir: str | os.PathLike,
    *,
    images: list[str] | None = None,
    projection: str = "umap",
    n_clusters: int = 8,
    random_state: int = 0,
    features: str | None = None,
    cancel: threading.Event | None = None,
) -> ProgressGen[Combined]:
    """Pool finished smears, add ``umap_0/umap_1`` and ``cluster``, compute batch metrics.

    Writes ``cells.parquet``, ``embeddings.npz``, ``batch_metrics.csv`` and ``summary.json``.
    ``features`` is the space map and clusters are made in (``feature_spaces``; default: the
    best the cells allow).
    """
    from napari_reddino.explore.analysis import Settings, iter_clusters, iter_map
    from napari_reddino.explore.batch_effects import batch_metrics
    from napari_reddino.io.cell_table import CellEmbeddings, pool_tables, save_table

    out_dir = Path(out_dir)
    previous = _previous_labels(out_dir / POOLED_TABLE)
    warnings: list[str] = []
    folders = []
    for folder in finished_smears(out_dir, images):
        problem = check_smear_outputs(folder)
        if problem is None:
            folders.append(folder)
            continue
        invalidate(folder)  # the next `embed` / `run` redoes it
        warnings.append(f"smear folder {folder.name} left out: {problem}; rerun `napari-reddino "
                        "run` (or `embed`) on its image to redo it")
    if not folders:
        raise ValueError(f"{out_dir}: no finished smears to pool"
                         + (f" ({'; '.join(warnings)})" if warnings else ""))
    tables, parts, offset = [], [], 0
    for i, folder in enumerate(folders):
        check_cancel(cancel)
        table, emb, _grid, _labels, _marker = load_smear_outputs(folder)
        table = table.copy()
        table[nm.EMBEDDING_ROW] = table[nm.EMBEDDING_ROW].to_numpy() + offset
        offset += len(emb.label)
        tables.append(table)
        parts.append(emb)
        yield Progress(i + 1, len(folders) + 3, f"pooled {folder.name}")
    table = pool_tables(tables).reset_index(drop=True)
    embeddings = CellEmbeddings.concat(parts)
    from napari_reddino.explore.spaces import resolve_space, space_matrix

    space = resolve_space(features, table, embeddings.vectors)
    vectors = space_matrix(table, np.asarray(embeddings.vectors, dtype=np.float32), space)
    n = len(table)
    if n < 3:
        raise ValueError(f"{out_dir}: only {n} cells in total, too few to project or cluster")
    method = projection if n > 15 else "pca"
    if method != projection:
        warnings.append(f"only {n} cells: the map is a PCA instead of {projection} (which needs "
                        "more than 15 cells)")
    yield Progress(len(folders), len(folders) + 3, f"{method} of {n} cells")
    settings = Settings(n_clusters=n_clusters, random_state=random_state).for_cells(n)
    coords = yield from iter_map(vectors, method, settings, cancel)  # the explorer's settings
    table[nm.UMAP[0]], table[nm.UMAP[1]] = coords[:, 0], coords[:, 1]
    check_cancel(cancel)
    yield Progress(len(folders) + 1, len(folders) + 3, "clustering")
    k = settings.n_clusters  # at most one cluster per 5 cells, as in the explorer
    if k != n_clusters:
        warnings.append(f"{k} clusters instead of the {n_clusters} asked for: {n} cells allow at "
                        "most one cluster per 5 cells")
    table[nm.CLUSTER] = yield from iter_clusters(vectors, "kmeans", settings, cancel)
    check_cancel(cancel)
    yield Progress(len(folders) + 2, len(folders) + 3, "batch-effect metrics")
    metrics, summary = _metrics(batch_metrics, vectors, table)
    summary.update({"n_cells": n, "n_images": len(folders), "projection": method,
                    "n_clusters": k, "feature_space": space})
    summary["n_subjects"] = int(table["subject"].nunique())
    if previous is not None:
        table, note = _carry_labels(table, previous, out_dir)
        warnings += [note] if note else []
    summary["warnings"] = warnings
    save_table(table, out_dir / POOLED_TABLE)
    embeddings.save(out_dir / POOLED_EMBEDDINGS)
    metrics.to_csv(out_dir / METRICS_TABLE, index=False)
    (out_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=1, default=_json_default))
    yield Progress(len(folders) + 3, len(folders) + 3, f"combined {n} cells")
    return Combined(table, embeddings, metrics, summary, warnings)


def _previous_labels(path: Path) -> pd.DataFrame | None:
    """The class columns of an existing pooled table (None if it has no classes yet)."""
    from napari_reddino.io.cell_table import load_table

    if not path.is_file():
        return None
    try:
        table = load_table(path)
    except Exception as exc:  # never overwrite labels we could not read
        raise ValueError(f"{path} exists but cannot be read ({exc}); it may hold labels: move "
                         "it away before pooling again") from exc
    if nm.CLASS not in table.columns or table[nm.CLASS].isna().all():
        return None
    for column, empty in ((nm.CLASS_SOURCE, None), (nm.CONFIDENCE, np.nan)):
        if column not in table.columns:
            table[column] = empty
    return table


def _carry_labels(table: pd.DataFrame, previous: pd.DataFrame, out_dir: Path):
    """Copy class, class_source, confidence of the previous pooled table onto the new one.

    Labels whose cell is gone or moved are written to ``labels_not_carried.csv`` (never lost).
    """
    from napari_reddino.label.files import export_labels, merge_labels

    result = merge_labels(table, previous)
    left = pd.concat([result.missing, result.moved.drop(columns="distance", errors="ignore")])
    if not len(left):
        return result.table, ""
    path = export_labels(left, out_dir / "labels_not_carried.csv")
    return result.table, (f"{len(left)} labeled cell(s) of the previous {POOLED_TABLE} are not "
                          f"in the new pool (smear redone or left out); kept in {path}")


def _metrics(batch_metrics, vectors, table) -> tuple[pd.DataFrame, dict]:
    """Batch metrics need >= 2 subjects; with one subject say so instead of failing."""
    subjects = table["subject"].astype(str).to_numpy()
    if len(set(subjects)) < 2:
        return pd.DataFrame(), {"batch_metrics": "needs at least 2 subjects"}
    classes = table[nm.CLASS].astype(str).to_numpy() if nm.CLASS in table.columns else None
    k = int(min(30, len(subjects) - 1))
    report = batch_metrics(vectors, subjects, classes, k=k)
    return report.per_subject.reset_index(names="subject"), dict(report.summary)


def _json_default(value):
    return value.item() if isinstance(value, np.generic) else str(value)


def combine(out_dir, **kwargs) -> Combined:
    """Sync wrapper of :func:`iter_combine`."""
    return run_to_completion(iter_combine(out_dir, **kwargs))
