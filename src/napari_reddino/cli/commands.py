"""The working subcommands of ``napari-reddino``: segment, embed, project, propagate, report, run.

Each is a thin layer over the core (``pipeline``, ``distributed``, ``report``, ``propagate``):
parse paths, drive the core generator under a progress bar, print where results went.
Exit codes: 0 ok, 1 some smears failed (listed in failures.csv), 2 bad input.
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.cli.console import drive
from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Progress, ProgressGen
from napari_reddino.runs.pipeline import (
    PipelineConfig,
    SmearStatus,
    find_images,
    iter_run_smear_file,
    read_image,
    read_subject_map,
)


def _say(text: str, style: str | None = None) -> None:
    """One line to the terminal, never wrapped; no markup, so '[x]' in names shows as typed."""
    from rich.console import Console

    Console(highlight=False, soft_wrap=True).print(text, markup=False, style=style)


def _warn(warnings) -> None:
    for text in warnings:
        _say(f"warning: {text}", style="yellow")


def _config(args: argparse.Namespace) -> PipelineConfig:
    if not args.backbone:  # say what the default is, and which better model is cached
        from napari_reddino.embed.offers import cli_note

        _say(f"note: {cli_note()}")
    return PipelineConfig(
        backbone=args.backbone or DEFAULTS.backbone,
        method=args.method,
        pooling=getattr(args, "pooling", DEFAULTS.pooling),
        device=getattr(args, "device", DEFAULTS.device),
        redo_corrected=bool(getattr(args, "redo_corrected", False)),
    )


def _print_statuses(statuses: pd.DataFrame, out_dir: Path) -> int:
    """One line of counts, the failures in full; exit code 1 if any smear failed."""
    counts = statuses["status"].value_counts().to_dict()
    _say(f"smears: {counts.get('done', 0)} done, {counts.get('skipped', 0)} already done "
         f"(skipped), {counts.get('failed', 0)} failed -> {out_dir}")
    failed = statuses[statuses["status"] == "failed"]
    for row in statuses[statuses["status"] != "failed"].itertuples():
        if isinstance(row.error, str) and row.error:  # e.g. redone because the file changed
            _say(f"note: {row.image}: {row.error}")
    if "warning" in statuses.columns:
        flagged = statuses[statuses["warning"].fillna("").astype(str) != ""]
        for row in flagged.itertuples():
            _say(f"warning: {row.image}: {row.warning}", style="yellow")
    for row in failed.itertuples():
        _say(f"failed {row.image}: {row.error}", style="red")
    return 1 if len(failed) else 0


def _iter_segment_files(images, out_dir: Path, method: str, subjects: dict,
                        cancel: threading.Event | None = None,
                        tables: list | None = None) -> ProgressGen[list[SmearStatus]]:
    import tifffile

    from napari_reddino.io.atomic import replacing
    from napari_reddino.io.cell_table import save_table
    from napari_reddino.io.smear_files import output_stems
    from napari_reddino.segment.counted import add_counted
    from napari_reddino.segment.dispatch import iter_segment

    statuses = []
    stems = output_stems(images)  # y.png and y.tif must not share y_cells.csv
    for i, path in enumerate(images):
        yield Progress(i, len(images), path.name)
        subject = subjects[path.name]
        try:
            image = read_image(path)
            result = yield from _relabel(iter_segment(
                image, method=method, image_name=path.name, subject=subject, cancel=cancel,
            ), i, len(images), path.name)
            stem = stems[path.name]
            with replacing(out_dir / f"{stem}_labels.tif", "labels") as tmp:
                tifffile.imwrite(tmp, result.labels.astype(np.int32), compression="zlib")
            features = add_counted(result.features)  # counted / not_counted_reason
            save_table(features, out_dir / f"{stem}_cells.csv")
            if tables is not None:  # for the "N of M objects counted" line
                tables.append(features)
        except (ValueError, OSError) as exc:
            statuses.append(SmearStatus(path.name, subject, str(path), "failed", error=str(exc)))
            continue
        statuses.append(SmearStatus(path.name, subject, str(path), "done", len(result.features)))
    yield Progress(len(images), len(images), "done")
    return statuses


def _relabel(gen, done: int, total: int, name: str):
    """Pass an inner generator's result through while showing progress over images."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        yield Progress(done, total, f"{name}: {p.message}")


def cmd_segment(args: argparse.Namespace) -> int:
    images = find_images(args.inputs)
    subjects = read_subject_map(args.subjects, images)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[pd.DataFrame] = []
    statuses = drive(_iter_segment_files(images, out_dir, args.method, subjects, tables=tables),
                     "segment", quiet=args.quiet)
    if tables:
        _say(_counted_line(pd.concat(tables, ignore_index=True), True))
    return _print_statuses(pd.DataFrame([s.as_row() for s in statuses]), out_dir)


def _iter_embed_files(images, out_dir: Path, config: PipelineConfig, subjects: dict,
                      cancel=None) -> ProgressGen[list[SmearStatus]]:
    statuses = []
    for i, path in enumerate(images):
        gen = iter_run_smear_file(path, out_dir, config, subject=subjects[path.name],
                                  cancel=cancel)
        statuses.append((yield from _relabel(gen, i, len(images), path.name)))
    yield Progress(len(images), len(images), "done")
    return statuses


def _write_statuses(statuses: list[SmearStatus], out_dir: Path) -> pd.DataFrame:
    from napari_reddino.io.atomic import write_csv
    from napari_reddino.runs.distributed import FAILURES_TABLE, RUNS_TABLE

    runs = pd.DataFrame([s.as_row() for s in statuses])
    write_csv(runs, out_dir / RUNS_TABLE, "run table")
    write_csv(runs[runs["status"] == "failed"], out_dir / FAILURES_TABLE, "failure table")
    return runs


def cmd_embed(args: argparse.Namespace) -> int:
    images = find_images(args.inputs)
    subjects = read_subject_map(args.subjects, images)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    statuses = drive(_iter_embed_files(images, out_dir, _config(args), subjects), "embed",
                     quiet=args.quiet)
    return _print_statuses(_write_statuses(statuses, out_dir), out_dir)


def cmd_project(args: argparse.Namespace) -> int:
    from napari_reddino.runs.combine import iter_combine

    combined = drive(iter_combine(args.run_dir, projection=args.projection,
                                  n_clusters=args.clusters, features=args.features,
                                  counted_only=args.counted_only),
                     "project", quiet=args.quiet)  # cells.h5ad too, for scanpy
    _warn(combined.warnings)
    _say(f"combined {len(combined.table)} objects of {combined.summary['n_images']} images "
         f"({_counted_line(combined.table, args.counted_only)}) "
         f"-> {Path(args.run_dir) / 'cells.parquet'}")
    return 0


def _load_combined(folder_or_table: str | Path, embeddings_path: str | None = None):
    """A combined cell table, the vector of each of its rows and the embeddings; a run
    folder's files must have been written together."""
    from napari_reddino.io.cell_table import CellEmbeddings, load_table
    from napari_reddino.runs.anndata_io import aligned_vectors
    from napari_reddino.runs.run_files import check_run_files

    path = Path(folder_or_table)
    table_path = path / "cells.parquet" if path.is_dir() else path
    if not table_path.is_file():
        raise FileNotFoundError(f"{path}: no combined cell table (run `napari-reddino project`)")
    npz = Path(embeddings_path) if embeddings_path else table_path.parent / "embeddings.npz"
    if not npz.is_file():
        raise FileNotFoundError(f"{npz}: embeddings not found (pass --reference-embeddings)")
    if not embeddings_path:  # a table saved by another tool is checked cell by cell below
        check_run_files(table_path.parent, strict=False)
    table = load_table(table_path)
    emb = CellEmbeddings.load(npz)
    return table, aligned_vectors(table, emb, table_path, npz), emb


def _own_reference(run_dir: str | Path, reference: str | None) -> bool:
    """Whether the labels come from the run itself (no --reference, or the run folder)."""
    if reference is None:
        return True
    ref = Path(reference)
    return ref.is_dir() and ref.resolve() == Path(run_dir).resolve()


def _reference(args: argparse.Namespace, backbone: str, width: int):
    """``(table, vectors, classes)`` of a separate reference: all its classed cells vote."""
    from napari_reddino.label.propagate import unlabeled_mask

    ref_table, ref_vectors, ref_embeddings = _load_combined(args.reference,
                                                            args.reference_embeddings)
    ref_backbone = ref_embeddings.backbone
    if nm.CLASS not in ref_table.columns or unlabeled_mask(ref_table[nm.CLASS]).all():
        raise ValueError(f"{args.reference}: the reference has no labeled cells ('class' column)")
    if ref_backbone != backbone or ref_vectors.shape[1] != width:
        raise ValueError(
            f"reference embeddings come from {ref_backbone!r} ({ref_vectors.shape[1]}-d), "
            f"{args.run_dir} from {backbone!r} ({width}-d): embed both with one backbone"
        )
    ref_classes = ref_table[nm.CLASS].astype(object).where(~unlabeled_mask(ref_table[nm.CLASS]))
    return ref_table, ref_vectors, ref_classes.to_numpy(dtype=object)


def cmd_propagate(args: argparse.Namespace) -> int:
    from napari_reddino.explore.spaces import resolve_space, space_matrix
    from napari_reddino.label.counting import counted_rows
    from napari_reddino.label.propagate import MANUAL, iter_propagate, unlabeled_mask
    from napari_reddino.runs.anndata_io import write_run_cells
    from napari_reddino.runs.run_files import read_summary

    table, vectors, embeddings = _load_combined(args.run_dir)
    backbone = embeddings.backbone
    own = np.full(len(table), None, dtype=object)
    if {nm.CLASS, nm.CLASS_SOURCE} <= set(table.columns):  # keep this run's own manual labels
        manual = table[nm.CLASS_SOURCE].astype(str).to_numpy() == MANUAL
        own[manual] = table[nm.CLASS].astype(str).to_numpy()[manual]
    if _own_reference(args.run_dir, args.reference):  # as the dock: its manual cells vote
        if unlabeled_mask(own).all():
            raise ValueError(f"{args.run_dir}: no manual labels ('class_source' manual); label "
                             "some cells first, or pass --reference")
        stacked, all_vectors, classes, n_ref = table, vectors, own, 0
        counted = counted_rows(table, args.counted_only)
    else:
        ref_table, ref_vectors, ref_classes = _reference(args, backbone, vectors.shape[1])
        stacked = pd.concat([ref_table, table], ignore_index=True)
        all_vectors = np.vstack([ref_vectors, vectors])
        classes, n_ref = np.concatenate([ref_classes, own]), len(ref_table)
        counted = np.concatenate([counted_rows(ref_table, args.counted_only),
                                  counted_rows(table, args.counted_only)])
    space = resolve_space(args.features, stacked, all_vectors)
    x = space_matrix(stacked, all_vectors, space, row_column=None)  # vectors: one per row
    result = drive(iter_propagate(x, classes, k=args.k,
                                  spreading=args.spreading, center=args.center,
                                  method=args.classifier, counted=counted),
                   "propagate", quiet=args.quiet)
    table[nm.CLASS] = result.classes[n_ref:].astype(object)  # None: not counted, unlabeled
    table[nm.CLASS_SOURCE] = result.source[n_ref:].astype(object)
    table[nm.CONFIDENCE] = result.confidence[n_ref:]
    # the table, matrix and AnnData together: no stale cells.h5ad beside the new classes
    write_run_cells(args.run_dir, table, embeddings,
                    projection=str(read_summary(args.run_dir).get("projection", "")))
    rows = counted_rows(table, args.counted_only)
    counts = table.loc[rows, nm.CLASS].value_counts().to_dict()
    _say(f"{_counted_line(table, args.counted_only)}; {int(rows.sum())} cells classified from "
         f"{int((~unlabeled_mask(classes[counted])).sum())} labeled cells ({space} space, "
         f"{result.method}): {counts}; mean confidence "
         f"{table.loc[rows, nm.CONFIDENCE].mean():.2f}")
    _write_differential(table, args.run_dir, args.counted_only)
    return 0


def _counted_line(table: pd.DataFrame, counted_only: bool) -> str:
    """``"N of M objects counted"``, or that every object is used (``--all-objects``)."""
    from napari_reddino.segment.counted import counted_summary

    return counted_summary(table) + ("" if counted_only else "; --all-objects: all used")


def _write_differential(table: pd.DataFrame, run_dir, counted_only: bool, grades=None) -> None:
    """``differential.csv`` of the classified cells, and one line per subject."""
    from napari_reddino.io.atomic import write_csv
    from napari_reddino.label.differential import DIFFERENTIAL_FILE, differential, summary_line

    diff = differential(table, counted_only=counted_only, grades=grades)
    path = write_csv(diff, Path(run_dir) / DIFFERENTIAL_FILE, "differential")
    _say(summary_line(diff) or "no classified red cells to count")
    _say(f"differential (counts, %, 95 % Wilson intervals, ICSH grades) -> {path}")


def cmd_differential(args: argparse.Namespace) -> int:
    from napari_reddino.io.cell_table import load_table

    path = Path(args.run_dir) / nm.CELLS_TABLE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{args.run_dir}: no {nm.CELLS_TABLE_FILE} (run `napari-reddino "
                                "project`, then label and `propagate`)")
    table = load_table(path)
    if nm.CLASS not in table.columns:
        raise ValueError(f"{path}: no classes yet; label some cells and run `napari-reddino "
                         "propagate` first")
    _say(_counted_line(table, args.counted_only))
    _write_differential(table, args.run_dir, args.counted_only, args.grades)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from napari_reddino.runs.report import iter_write_report
    from napari_reddino.runs.run_files import check_run_files

    check_run_files(args.run_dir)  # not a report of files that disagree
    index = drive(iter_write_report(args.run_dir, args.out, max_overlays=args.max_overlays,
                                    counted_only=args.counted_only),
                  "report", quiet=args.quiet)
    _say(f"report: {index.resolve()}")
    return 0


def run_pipeline(images: list[Path], out_dir: Path, config: PipelineConfig, subjects: dict,
                 *, workers=None, scheduler=None, retries=1,
                 projection=DEFAULTS.map_method, clusters=DEFAULTS.n_clusters,
                 report=True, quiet=False, features=DEFAULTS.space,
                 counted_only=DEFAULTS.counted_only) -> int:
    """Batch (dask) -> combine/project/cluster/metrics -> HTML report; returns the exit code."""
    from napari_reddino.runs.combine import iter_combine
    from napari_reddino.runs.distributed import iter_run_batch
    from napari_reddino.runs.pipeline import cached_backbone
    from napari_reddino.runs.report import iter_write_report

    cached_backbone(config.backbone, config.device)  # fail early and clearly on a missing model
    batch = drive(iter_run_batch(images, out_dir, config, subjects=subjects, n_workers=workers,
                                 scheduler=scheduler, retries=retries), "run", quiet=quiet)
    code = _print_statuses(batch.runs, out_dir)
    finished = batch.runs.loc[batch.runs["status"] != "failed", "image"].tolist()
    if not finished:
        _say("no smear could be processed", style="red")
        return 1
    combined = drive(iter_combine(out_dir, images=finished, projection=projection,
                                  n_clusters=clusters, features=features,
                                  counted_only=counted_only), "combine", quiet=quiet)
    _warn(combined.warnings)
    _say(_counted_line(combined.table, counted_only))  # cells.h5ad: written by combine
    if report:
        index = drive(iter_write_report(out_dir, counted_only=counted_only), "report",
                      quiet=quiet)
        _say(f"report: {index.resolve()}")
    return code


def cmd_run(args: argparse.Namespace) -> int:
    images = find_images(args.inputs)
    subjects = read_subject_map(args.subjects, images)
    return run_pipeline(images, Path(args.out), _config(args), subjects, workers=args.workers,
                        scheduler=args.scheduler, retries=args.retries,
                        projection=args.projection, clusters=args.clusters,
                        features=args.features, counted_only=args.counted_only,
                        report=not args.no_report, quiet=args.quiet)

