"""The per-smear pipeline: read image -> segment -> embed (grid + cells) -> outputs on disk.

One function chain that the CLI, the dask workers and the demo all call, so a smear processed
in a notebook, from the command line or on a cluster gives the same table and the same vectors.
Outputs of one smear live in one folder; a ``_SUCCESS`` marker written last (atomically) says the
folder is complete and was made with a given configuration, so reruns skip finished smears.
"""

from __future__ import annotations

import functools
import glob
import json
import os
import re
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._progress import Progress, ProgressGen, check_cancel, run_to_completion

DONE_MARKER = "_SUCCESS"
TABLE_FILE = "cells.parquet"
EMBEDDINGS_FILE = "embeddings.npz"
GRID_FILE = "grid.zarr"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class PipelineInputError(ValueError):
    """A smear that cannot be processed (unreadable file, bad image): the message says why."""


@dataclass(frozen=True)
class PipelineConfig:
    """What decides a smear's outputs; a change here means finished smears are redone."""

    backbone: str
    method: str = "classical"
    pooling: str = "cls_crop"
    device: str = "auto"
    segment_params: dict = field(default_factory=dict)

    def fingerprint(self) -> dict:
        """The parts that change results (not the device), as stored in the done marker."""
        return {
            "backbone": self.backbone,
            "method": self.method,
            "pooling": self.pooling,
            "segment_params": dict(sorted(self.segment_params.items())),
        }


@dataclass
class SmearResult:
    """Everything one smear produces, in memory."""

    image_name: str
    subject: str
    labels: np.ndarray
    table: pd.DataFrame
    embeddings: object  # cells.CellEmbeddings
    grid: np.ndarray
    patch_size: int
    seconds: float = 0.0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a smear photo as (H, W, 3) uint8, with a clear error for unreadable files."""
    import imageio.v3 as iio

    from .segment import validate_image

    path = Path(path)
    if not path.is_file():
        raise PipelineInputError(f"{path}: no such image file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            data = iio.imread(path)
    except Exception as exc:  # any decoder error means the same thing to the user
        raise PipelineInputError(f"{path.name}: cannot read image ({exc})") from exc
    try:
        return validate_image(np.asarray(data))
    except ValueError as exc:
        raise PipelineInputError(f"{path.name}: {exc}") from exc


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand folders and glob patterns to a sorted list of image files; clear error if none."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found += [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise PipelineInputError(f"{text}: no such file, folder or matching pattern")
    if not found:
        raise PipelineInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {inputs}")
    names = [p.name for p in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineInputError(
            f"image file names must be unique (they key the cells): duplicated {duplicates}"
        )
    return found


def read_subject_map(path: str | os.PathLike | None, images: list[Path]) -> dict[str, str]:
    """Image file name -> subject, from a CSV with ``image,subject`` columns.

    Without a CSV the subject is the image's parent folder name (one folder per subject).
    """
    if path is None:
        return {p.name: p.parent.name or "unknown" for p in images}
    try:
        table = pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise PipelineInputError(f"{path}: cannot read subject CSV ({exc})") from exc
    missing_cols = {"image", "subject"} - set(table.columns)
    if missing_cols:
        raise PipelineInputError(
            f"{path}: subject CSV needs columns 'image' and 'subject', "
            f"missing {sorted(missing_cols)}"
        )
    by_name = dict(zip(table["image"].str.strip(), table["subject"].str.strip()))
    mapping = {}
    for p in images:
        subject = by_name.get(p.name, by_name.get(p.stem))
        if subject is None:
            raise PipelineInputError(f"{path}: no subject for image {p.name!r}")
        mapping[p.name] = subject
    return mapping


@functools.lru_cache(maxsize=2)
def cached_backbone(name: str, device: str = "auto"):
    """Load a backbone once per process (dask workers reuse it for every smear they get)."""
    from .backbones import load_backbone

    return load_backbone(name, device=device)


def iter_process_smear(
    image: np.ndarray,
    backbone,
    *,
    image_name: str,
    subject: str = "unknown",
    method: str = "classical",
    pooling: str = "cls_crop",
    segment_params: dict | None = None,
    cancel: threading.Event | None = None,
) -> ProgressGen[SmearResult]:
    """Segment, embed the patch grid, pool per-cell embeddings; return a :class:`SmearResult`."""
    from .embed import iter_cell_embeddings, iter_patch_grid
    from .segment import iter_segment, validate_image

    start = time.perf_counter()
    image = validate_image(image)
    yield Progress(0, 3, f"{image_name}: segmenting ({method})")
    seg = yield from iter_segment(
        image,
        method=method,
        cancel=cancel,
        image_name=image_name,
        subject=subject,
        **(segment_params or {}),
    )
    check_cancel(cancel)
    yield Progress(1, 3, f"{image_name}: {int(seg.labels.max())} cells, embedding patch grid")
    grid = yield from iter_patch_grid(image, backbone, cancel=cancel)
    grid = np.asarray(grid, dtype=np.float32)
    check_cancel(cancel)
    yield Progress(2, 3, f"{image_name}: embedding cells ({pooling})")
    embeddings = yield from iter_cell_embeddings(
        image,
        seg.labels,
        backbone,
        pooling=pooling,
        grid=grid,
        image_name=image_name,
        cancel=cancel,
    )
    table = _attach_embedding_rows(seg.features, embeddings, subject)
    yield Progress(3, 3, f"{image_name}: done")
    return SmearResult(
        image_name=image_name,
        subject=subject,
        labels=np.asarray(seg.labels, dtype=np.int32),
        table=table,
        embeddings=embeddings,
        grid=grid,
        patch_size=int(backbone.patch_size),
        seconds=time.perf_counter() - start,
    )


def process_smear(image: np.ndarray, backbone, **kwargs) -> SmearResult:
    """Sync wrapper of :func:`iter_process_smear`."""
    return run_to_completion(iter_process_smear(image, backbone, **kwargs))


def _attach_embedding_rows(features: pd.DataFrame, embeddings, subject: str) -> pd.DataFrame:
    """Point each table row at its embedding row (cells are keyed by label within a smear)."""
    table = features.copy().reset_index(drop=True)
    row_of_label = {int(lab): row for row, lab in enumerate(np.asarray(embeddings.label))}
    table["embedding_row"] = [row_of_label.get(int(lab), -1) for lab in table["label"]]
    table = table[table["embedding_row"] >= 0].sort_values("label").reset_index(drop=True)
    table["subject"] = subject
    return table


def smear_dir(out_dir: str | os.PathLike, image_name: str) -> Path:
    """The output folder of one smear (the file name, made safe for any file system)."""
    return Path(out_dir) / "smears" / re.sub(r"[^A-Za-z0-9._-]", "_", image_name)


def is_done(out_dir: str | os.PathLike, image_name: str, config: PipelineConfig) -> bool:
    """True if this smear's outputs are complete and were made with the same configuration."""
    marker = smear_dir(out_dir, image_name) / DONE_MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text())["config"] == config.fingerprint()
    except (ValueError, KeyError):
        return False


def write_smear_outputs(
    result: SmearResult, out_dir: str | os.PathLike, config: PipelineConfig, source: str = ""
) -> Path:
    """Write grid (Zarr), cell table (Parquet), embeddings (.npz), then the done marker.

    Files go to a temporary sibling folder that is renamed into place, then the marker is
    written via a temporary file and ``os.replace``: a crash leaves either nothing or a folder
    without marker, which the next run redoes.
    """
    import zarr

    from .cells import save_table

    final = smear_dir(out_dir, result.image_name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        group = zarr.open_group(str(staging / GRID_FILE), mode="w")
        grid_h, grid_w, dim = result.grid.shape
        group.create_array("grid", data=result.grid, chunks=(grid_h, grid_w, min(dim, 256)))
        group.create_array("labels", data=result.labels, chunks=(1024, 1024))
        group.attrs.update({"patch_size": result.patch_size, "image": result.image_name})
        save_table(result.table, staging / TABLE_FILE)
        result.embeddings.save(staging / EMBEDDINGS_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker = {
        "image": result.image_name,
        "subject": result.subject,
        "source": str(source),
        "n_cells": len(result.table),
        "patch_size": result.patch_size,
        "seconds": round(result.seconds, 3),
        "config": config.fingerprint(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp_marker = final / f".{DONE_MARKER}.tmp"
    tmp_marker.write_text(json.dumps(marker, indent=1))
    os.replace(tmp_marker, final / DONE_MARKER)
    return final


def load_smear_outputs(folder: str | os.PathLike):
    """Read back one finished smear folder: ``(table, CellEmbeddings, grid, labels, marker)``."""
    import zarr

    from .cells import CellEmbeddings, load_table

    folder = Path(folder)
    marker_path = folder / DONE_MARKER
    if not marker_path.is_file():
        raise PipelineInputError(f"{folder}: not a finished smear folder (no {DONE_MARKER})")
    group = zarr.open_group(str(folder / GRID_FILE), mode="r")
    return (
        load_table(folder / TABLE_FILE),
        CellEmbeddings.load(folder / EMBEDDINGS_FILE),
        np.asarray(group["grid"][:]),
        np.asarray(group["labels"][:]),
        json.loads(marker_path.read_text()),
    )


@dataclass
class SmearStatus:
    """What happened to one smear in a batch (one row of the run summary / failures table)."""

    image: str
    subject: str
    source: str
    status: str  # "done" | "skipped" | "failed"
    n_cells: int = 0
    seconds: float = 0.0
    error: str = ""

    def as_row(self) -> dict:
        return asdict(self)


def iter_run_smear_file(
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: PipelineConfig,
    *,
    subject: str = "unknown",
    threads: int | None = None,
    cancel: threading.Event | None = None,
) -> ProgressGen[SmearStatus]:
    """Process one smear file into ``out_dir`` unless already done; input errors become a status.

    This is the unit of work of a batch (one dask task). Errors in the input (unreadable or
    invalid image) are returned as ``status="failed"`` so the other smears carry on; other
    exceptions propagate so the scheduler can retry, and a dead worker process is rescheduled.
    """
    path = Path(path)
    name = path.name
    if is_done(out_dir, name, config):
        return SmearStatus(name, subject, str(path), "skipped")
    if threads:
        import torch

        torch.set_num_threads(int(threads))
    start = time.perf_counter()
    # outside the try: a missing model is a configuration error, not this smear's fault
    backbone = cached_backbone(config.backbone, config.device)
    try:
        image = read_image(path)
        result = yield from iter_process_smear(
            image,
            backbone,
            image_name=name,
            subject=subject,
            method=config.method,
            pooling=config.pooling,
            segment_params=dict(config.segment_params),
            cancel=cancel,
        )
    except (ValueError, OSError) as exc:  # bad or unreadable input: the smear's fault
        return SmearStatus(name, subject, str(path), "failed", error=str(exc))
    write_smear_outputs(result, out_dir, config, source=str(path))
    return SmearStatus(
        name, subject, str(path), "done", len(result.table), time.perf_counter() - start
    )


def run_smear_file(path, out_dir, config, **kwargs) -> SmearStatus:
    """Sync wrapper of :func:`iter_run_smear_file` (what a dask task calls)."""
    return run_to_completion(iter_run_smear_file(path, out_dir, config, **kwargs))
