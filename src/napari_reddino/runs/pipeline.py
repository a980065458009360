"""The per-smear pipeline: read image -> segment -> embed (grid + cells) -> outputs on disk.

One function chain that the CLI, the dask workers and the demo all call, so a smear processed
in a notebook, from the command line or on a cluster gives the same table and the same vectors.
Outputs of one smear live in one folder; a ``_SUCCESS`` marker written last (atomically) says the
folder is complete and was made with a given configuration, so reruns skip finished smears.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.smear_files import (  # noqa: F401  (re-exported: the pipeline's public API)
    IMAGE_SUFFIXES,
    PipelineInputError,
    find_images,
    read_image,
    read_subject_map,
    safe_name,
)
from napari_reddino.progress import ProgressGen, run_to_completion
from napari_reddino.runs.corrections import corrected_cells
from napari_reddino.runs.embed_smear import (  # cached_backbone: importable from here too
    cached_backbone,
    iter_embed_smear,
)
from napari_reddino.segment.counted import add_counted

DONE_MARKER, GRID_FILE = nm.DONE_MARKER, nm.GRID_FILE
# a smear folder holds its cells under the run folder's names (names.py)
TABLE_FILE, EMBEDDINGS_FILE = nm.CELLS_TABLE_FILE, nm.EMBEDDINGS_FILE


@dataclass(frozen=True)
class PipelineConfig:
    """What decides a smear's outputs; a change here means finished smears are redone."""

    backbone: str
    method: str = DEFAULTS.segment_method
    pooling: str = DEFAULTS.pooling
    device: str = DEFAULTS.device
    segment_params: dict = field(default_factory=dict)
    pixel_size: float | None = None  # µm per pixel: morphology in µm (None: in pixels)
    redo_corrected: bool = False  # False: a smear corrected by hand is never made again

    def fingerprint(self) -> dict:
        """The parts that change results (not the device), as stored in the done marker."""
        from napari_reddino.embed.backbones import weights_identity

        return {
            "backbone": self.backbone,
            "weights": weights_identity(self.backbone),
            "method": self.method,
            "pooling": self.pooling,
            "segment_params": dict(sorted(self.segment_params.items())),
            # only when set: folders finished before pixel sizes existed stay finished
            **({"pixel_size": self.pixel_size} if self.pixel_size is not None else {}),
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
    warning: str = ""  # the segmentation looks implausible (segment.check), else empty


def iter_process_smear(
    image: np.ndarray,
    backbone,
    *,
    image_name: str,
    subject: str = "unknown",
    method: str = DEFAULTS.segment_method,
    pooling: str = DEFAULTS.pooling,
    segment_params: dict | None = None,
    pixel_size: float | None = None,
    cancel: threading.Event | None = None,
) -> ProgressGen[SmearResult]:
    """Segment, embed the patch grid, pool per-cell embeddings; return a :class:`SmearResult`.

    The work is :func:`~napari_reddino.runs.embed_smear.iter_embed_smear`, as in the embedding
    dock; ``pixel_size`` (µm per pixel) puts morphology in µm, as a layer scale does there.
    """
    smear = yield from iter_embed_smear(
        image, None, backbone, pooling=pooling, pixel_size=pixel_size, method=method,
        segment_params=segment_params, image_name=image_name, subject=subject, cancel=cancel)
    return SmearResult(
        image_name=image_name,
        subject=subject,
        labels=np.asarray(smear.labels, dtype=np.int32),
        table=smear.table,
        embeddings=smear.embeddings,
        grid=smear.grid,
        patch_size=smear.patch_size,
        seconds=smear.seconds,
        warning=smear.warning,
    )


def process_smear(image: np.ndarray, backbone, **kwargs) -> SmearResult:
    """Sync wrapper of :func:`iter_process_smear`."""
    return run_to_completion(iter_process_smear(image, backbone, **kwargs))


def smear_dir(out_dir: str | os.PathLike, image_name: str) -> Path:
    """The output folder of one smear: the file name if it is safe for any file system, else
    the name made safe (cut when long) plus ``~`` and a hash of the real name
    (:func:`~napari_reddino.io.smear_files.safe_name`: ``a b.png`` and ``a_b.png`` never share a
    folder, and a name never leads outside ``smears/``)."""
    return Path(out_dir) / "smears" / safe_name(image_name)


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file (an image replaced under the same name is another smear)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def read_marker(out_dir: str | os.PathLike, image_name: str) -> dict | None:
    """The done marker of a smear, None if absent or unreadable."""
    try:
        marker = json.loads((smear_dir(out_dir, image_name) / DONE_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def is_done(out_dir: str | os.PathLike, image_name: str, config: PipelineConfig, *,
            source_sha256: str | None = None) -> bool:
    """True if this smear's outputs are complete and were made with the same configuration
    (and, when ``source_sha256`` is given, from an image file with that content)."""
    marker = read_marker(out_dir, image_name)
    if marker is None or marker.get("config") != config.fingerprint():
        return False
    return source_sha256 is None or marker.get("source_sha256") == source_sha256


def check_grid(folder: str | os.PathLike) -> str | None:
    """Why a smear folder's ``grid.zarr`` is unusable (missing, no ``grid`` / ``labels``), or
    None. Folders the napari writer made hold labels only (no patch grid)."""
    import zarr

    folder = Path(folder)
    try:
        marker = json.loads((folder / DONE_MARKER).read_text())
    except (OSError, ValueError):
        marker = {}
    napari_made = isinstance(marker, dict) and isinstance(marker.get("config"), dict) and (
        "written_by" in marker["config"])
    try:
        arrays = set(zarr.open_group(str(folder / GRID_FILE), mode="r").array_keys())
    except Exception as exc:  # missing store, bad metadata: all mean "damaged"
        return f"{GRID_FILE} is unreadable ({type(exc).__name__}: {exc})"
    needed = {"labels"} if napari_made else {"grid", "labels"}
    missing = sorted(needed - arrays)
    return f"{GRID_FILE} has no {' or '.join(missing)}" if missing else None


def check_smear_outputs(folder: str | os.PathLike) -> str | None:
    """Why a finished smear folder cannot be used (damaged file, missing grid, rows out of
    range), or None."""
    try:
        table, emb = load_smear_cells(folder)
    except Exception as exc:  # zip/parquet/npz decoders raise many types: all mean "damaged"
        return f"damaged output ({type(exc).__name__}: {exc})"
    rows = pd.to_numeric(table.get(nm.EMBEDDING_ROW, pd.Series(dtype=float)), errors="coerce")
    if rows.isna().any() or (len(rows) and (rows.min() < 0 or rows.max() >= len(emb.label))):
        return f"{TABLE_FILE}: embedding_row points outside the {len(emb.label)} embeddings"
    if len(rows) and not np.array_equal(np.asarray(emb.label)[rows.to_numpy(int)],
                                        table["label"].to_numpy()):
        return f"{TABLE_FILE} and {EMBEDDINGS_FILE} disagree on the cells' labels"
    return check_grid(folder)


def invalidate(folder: str | os.PathLike) -> None:
    """Remove a smear folder's done marker, so the next run redoes it."""
    (Path(folder) / DONE_MARKER).unlink(missing_ok=True)


def set_subject(folder: str | os.PathLike, subject: str) -> None:
    """Give a finished smear a new subject (table + marker) without recomputing it."""
    from napari_reddino.io.cell_table import load_table, save_table

    folder = Path(folder)
    table = load_table(folder / TABLE_FILE)
    table["subject"] = subject
    save_table(table, folder / TABLE_FILE)
    marker = json.loads((folder / DONE_MARKER).read_text())
    marker["subject"] = subject
    _write_marker(folder, marker)


def _write_marker(folder: Path, marker: dict) -> None:
    tmp_marker = folder / f".{DONE_MARKER}.tmp"
    tmp_marker.write_text(json.dumps(marker, indent=1))
    os.replace(tmp_marker, folder / DONE_MARKER)


def write_smear_outputs(
    result: SmearResult, out_dir: str | os.PathLike, config: PipelineConfig, source: str = "",
    source_sha256: str | None = None,
) -> Path:
    """Write grid (Zarr), cell table (Parquet), embeddings (.npz), then the done marker.

    Files go to a temporary sibling folder that is renamed into place, then the marker is
    written via a temporary file and ``os.replace``: a crash leaves either nothing or a folder
    without marker, which the next run redoes.
    """
    import zarr

    from napari_reddino.io.cell_table import save_table

    final = smear_dir(out_dir, result.image_name)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        group = zarr.open_group(str(staging / GRID_FILE), mode="w")
        grid_h, grid_w, dim = result.grid.shape
        group.create_array("grid", data=result.grid, chunks=(grid_h, grid_w, min(dim, 256)))
        group.create_array("labels", data=result.labels, chunks=(1024, 1024))
        group.attrs.update({"patch_size": result.patch_size, "image": result.image_name})
        table = add_counted(result.table)  # counted / not_counted_reason (segment.counted)
        # the image's content hash keys its labels too (label.files)
        if source_sha256:
            table = table.assign(**{nm.IMAGE_SHA256: source_sha256})
        save_table(table, staging / TABLE_FILE)
        result.embeddings.save(staging / EMBEDDINGS_FILE)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        final.chmod(final.parent.stat().st_mode & 0o777)  # as its run folder, not mkdtemp's 0700
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    marker = {
        "image": result.image_name,
        "subject": result.subject,
        # absolute (any working directory) and relative to the smear folder (moves with it)
        "source": str(Path(source).resolve()) if source else "",
        "source_relative": os.path.relpath(Path(source).resolve(), final) if source else "",
        "source_sha256": source_sha256,
        "warning": result.warning,
        "n_cells": len(result.table),
        "patch_size": result.patch_size,
        "seconds": round(result.seconds, 3),
        "config": config.fingerprint(),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    _write_marker(final, marker)
    return final


def load_smear_cells(folder: str | os.PathLike):
    """``(table, CellEmbeddings)`` of one smear folder: its cells without the grid and labels."""
    from napari_reddino.io.cell_table import CellEmbeddings, load_table

    folder = Path(folder)
    return load_table(folder / TABLE_FILE), CellEmbeddings.load(folder / EMBEDDINGS_FILE)


def load_smear_outputs(folder: str | os.PathLike):
    """Read back one finished smear folder: ``(table, CellEmbeddings, grid, labels, marker)``."""
    import zarr

    folder = Path(folder)
    marker_path = folder / DONE_MARKER
    if not marker_path.is_file():
        raise PipelineInputError(f"{folder}: not a finished smear folder (no {DONE_MARKER})")
    group = zarr.open_group(str(folder / GRID_FILE), mode="r")
    return (
        *load_smear_cells(folder),
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
    warning: str = ""  # an implausible segmentation (few cells for the stained area...)

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
    try:
        sha = file_sha256(path)
    except OSError as exc:
        return SmearStatus(name, subject, str(path), "failed", error=f"{name}: {exc}")
    note = ""
    if is_done(out_dir, name, config, source_sha256=sha):
        folder = smear_dir(out_dir, name)
        problem = check_smear_outputs(folder)
        if problem is None:
            marker = read_marker(out_dir, name)
            if marker.get("subject") != subject:
                set_subject(folder, subject)
            return SmearStatus(name, subject, str(path), "skipped",
                               warning=marker.get("warning") or "")
        invalidate(folder)
        note = f"redone: its finished folder was unusable ({problem})"
    elif (read_marker(out_dir, name) or {}).get("config") == config.fingerprint():
        note = "redone: the image file changed since it was processed"
    edited = 0 if config.redo_corrected else corrected_cells(smear_dir(out_dir, name))
    if edited:
        return SmearStatus(name, subject, str(path), "skipped", warning=(
            f"kept: {edited} cells were corrected by hand; pass --redo-corrected to segment "
            "it again"))
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
            pixel_size=config.pixel_size,
            cancel=cancel,
        )
    except (ValueError, OSError) as exc:  # bad or unreadable input: the smear's fault
        return SmearStatus(name, subject, str(path), "failed", error=str(exc))
    try:
        write_smear_outputs(result, out_dir, config, source=str(path), source_sha256=sha)
    except OSError as exc:  # e.g. a full disk: this smear fails by name, the batch goes on
        return SmearStatus(name, subject, str(path), "failed",
                           error=f"{name}: cannot write its outputs: {exc}")
    return SmearStatus(
        name, subject, str(path), "done", len(result.table), time.perf_counter() - start,
        error=note, warning=result.warning,
    )


def run_smear_file(path, out_dir, config, **kwargs) -> SmearStatus:
    """Sync wrapper of :func:`iter_run_smear_file` (what a dask task calls)."""
    return run_to_completion(iter_run_smear_file(path, out_dir, config, **kwargs))
