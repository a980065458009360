"""Embed one smear in memory: segment if needed, patch grid, overlay, cell vectors, morphology.

The one core the pipeline (:func:`napari_reddino.runs.pipeline.iter_process_smear`, which adds
reading the file and writing the run folder) and the embedding dock both call, so a smear embedded
in napari and one embedded from the command line give the same vectors and the same morphology.
:func:`cached_backbone` is the one backbone cache of a process (CLI, dask workers, dock, ``tl``).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion


@functools.lru_cache(maxsize=2)
def cached_backbone(name: str, device: str = "auto"):
    """Load a backbone once per process (dask workers reuse it for every smear they get)."""
    from napari_reddino.embed.backbones import load_backbone

    return load_backbone(name, device=device)


def checkpoint_source(source: str) -> str:
    """A raw ``.pth``/``.pt`` checkpoint -> ``local-dir:`` of its timm folder (converted once,
    beside it, so the next load is a plain folder load); any other source unchanged."""
    if not source.endswith((".pth", ".pt")):
        return source
    from napari_reddino.embed.backbones import convert_dinov2_checkpoint

    checkpoint = Path(source)
    folder = checkpoint.with_name(f"{checkpoint.stem}-timm")
    if not (folder / "config.json").is_file():
        convert_dinov2_checkpoint(checkpoint, folder)
    return f"local-dir:{folder}"


@dataclass
class EmbeddedSmear:
    """What :func:`iter_embed_smear` made of one smear (None: that part was not asked for)."""

    labels: np.ndarray | None  # the cells embedded (given, or segmented here)
    table: pd.DataFrame | None  # segmented here: features + embedding_row + subject + morph_*
    embeddings: object  # io.cell_table.CellEmbeddings, one row per label
    morphology: pd.DataFrame | None  # ``label`` + ``morph_*`` columns, one row per label
    grid: np.ndarray | None  # (ceil(H/p), ceil(W/p), D) patch tokens, when kept or pooled from
    overlay: tuple | None  # (rgb, scale, translate) of the PCA overlay, when asked for
    backbone: str = ""
    patch_size: int = 0
    seconds: float = 0.0
    warning: str = ""  # the segmentation looks implausible (segment.check), else empty


def iter_embed_smear(
    image,
    labels,
    backbone,
    *,
    pooling: str = DEFAULTS.pooling,
    pixel_size: float | None = None,
    method: str | None = DEFAULTS.segment_method,
    segment_params: dict | None = None,
    keep_grid: bool = True,
    overlay_subdivide: int | None = None,
    overlay_cells_only: bool = True,
    image_name: str = "image",
    subject: str = "unknown",
    cancel: threading.Event | None = None,
) -> ProgressGen[EmbeddedSmear]:
    """Embed a smear's cells (and patch grid / overlay); returns an :class:`EmbeddedSmear`.

    ``labels`` None segments with ``method`` first (None: no cells, e.g. an overlay only).
    ``pixel_size`` (µm per pixel) puts morphology in µm. ``keep_grid`` returns the patch grid
    (the run folder stores it); it is embedded anyway when ``patch_mean`` pools from it.
    ``overlay_subdivide`` asks for the PCA overlay at patch/k resolution (``fine_grid``).
    """
    from napari_reddino.embed import fine_grid
    from napari_reddino.embed.grid import iter_cell_embeddings, iter_patch_grid
    from napari_reddino.morphology.features import (
        COLUMN_PREFIX,
        merge_morphology,
        morphology_features,
    )
    from napari_reddino.segment.dispatch import iter_segment, validate_image

    start = time.perf_counter()
    image = validate_image(image)
    segmenting = labels is None and method is not None
    has_cells = labels is not None or segmenting
    want_grid = keep_grid or (has_cells and pooling == "patch_mean")
    steps = segmenting + want_grid + (overlay_subdivide is not None) + 2 * has_cells
    done = 0

    def step(message: str) -> Progress:
        return Progress(done, steps, f"{image_name}: {message}")

    features, warning = None, ""
    if segmenting:
        yield step(f"segmenting ({method})")
        seg = yield from iter_segment(image, method=method, cancel=cancel, image_name=image_name,
                                      subject=subject, **(segment_params or {}))
        labels, features, warning = seg.labels, seg.features, getattr(seg, "warning", None) or ""
        done += 1
    grid = None
    if want_grid:
        check_cancel(cancel)
        cells = f"{int(labels.max())} cells, " if segmenting else ""
        yield step(f"{cells}embedding patch grid")
        grid = yield from iter_patch_grid(image, backbone, cancel=cancel)
        grid = np.asarray(grid, dtype=np.float32) if keep_grid else grid
        done += 1
    overlay = None
    if overlay_subdivide is not None:  # sub-patch resolution, colors fitted per cell
        check_cancel(cancel)
        yield step("PCA overlay")
        overlay = yield from fine_grid.iter_overlay(
            image, backbone, labels=labels, subdivide=overlay_subdivide,
            cells_only=overlay_cells_only, grid=grid, cancel=cancel)
        done += 1
    embeddings = morphology = table = None
    if has_cells:
        check_cancel(cancel)
        yield step(f"embedding cells ({pooling})")
        embeddings = yield from iter_cell_embeddings(image, labels, backbone, pooling=pooling,
                                                     grid=grid, image_name=image_name,
                                                     cancel=cancel)
        done += 1
        yield step("measuring cell morphology")
        morphology = morphology_features(labels, image, pixel_size=pixel_size,
                                         prefix=COLUMN_PREFIX)
        done += 1
    if features is not None:
        table = merge_morphology(attach_embedding_rows(features, embeddings, subject), morphology)
    yield step("done")
    return EmbeddedSmear(labels=labels, table=table, embeddings=embeddings, morphology=morphology,
                         grid=grid, overlay=overlay, backbone=str(backbone.name),
                         patch_size=int(backbone.patch_size),
                         seconds=time.perf_counter() - start, warning=warning)


def embed_smear(image, labels, backbone, **kwargs) -> EmbeddedSmear:
    """Sync wrapper of :func:`iter_embed_smear`."""
    return run_to_completion(iter_embed_smear(image, labels, backbone, **kwargs))


def attach_embedding_rows(features: pd.DataFrame, embeddings, subject: str) -> pd.DataFrame:
    """Point each table row at its embedding row (cells are keyed by label within a smear)."""
    table = features.copy().reset_index(drop=True)
    row_of_label = {int(lab): row for row, lab in enumerate(np.asarray(embeddings.label))}
    table[nm.EMBEDDING_ROW] = [row_of_label.get(int(lab), -1) for lab in table["label"]]
    table = table[table[nm.EMBEDDING_ROW] >= 0].sort_values("label").reset_index(drop=True)
    table["subject"] = subject
    return table
