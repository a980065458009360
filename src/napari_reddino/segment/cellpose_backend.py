"""Cellpose 4 backend: any cellpose weights file, or a built-in name ('cpsam', 'cpsam_v2', ...).

cellpose itself downloads a missing built-in model silently (and falls back to its default model
for unknown names), which hangs offline. Here the weights file is resolved first; a missing one
raises :class:`WeightsNotFoundError` naming the file and the folder to put it in, unless the caller
explicitly allows the download. Models are cached per (weights file, device).
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np

from napari_reddino.defaults import DEFAULTS

MODELS_ENV = "CELLPOSE_LOCAL_MODELS_PATH"
BUILTIN_MODELS = ("cpsam", "cpsam_v2", "cpdino", "cpdino-vitb")  # cellpose.models.MODEL_NAMES
MODEL_URL = "https://huggingface.co/mouseland/cellpose-sam/resolve/main/"


class WeightsNotFoundError(FileNotFoundError):
    """Weights are not on disk (and may not be downloaded); the message says where to put them."""


def cellpose_models_dir() -> Path:
    """The folder cellpose looks in for built-in models (honors CELLPOSE_LOCAL_MODELS_PATH)."""
    env = os.environ.get(MODELS_ENV)
    return Path(env) if env else Path.home() / ".cellpose" / "models"


def resolve_cellpose_weights(model: str | os.PathLike, *, allow_download: bool = False) -> Path:
    """Path of the weights file for ``model`` (a file path or a built-in name); never hangs.

    A missing built-in model is downloaded through cellpose only when ``allow_download``;
    otherwise :class:`WeightsNotFoundError` says which file to place where.
    """
    candidate = Path(model).expanduser()
    if candidate.is_file():
        return candidate
    name = str(model)
    if name not in BUILTIN_MODELS:
        raise WeightsNotFoundError(
            f"cellpose model '{name}' is neither a weights file nor a built-in model "
            f"({', '.join(BUILTIN_MODELS)})")
    folder = cellpose_models_dir()
    path = folder / name
    if path.is_file():
        return path
    if allow_download:
        from cellpose import models

        return Path(models.cache_model_path(name))
    raise WeightsNotFoundError(
        f"cellpose weights '{name}' not found: expected the file {path}. Download "
        f"{MODEL_URL}{name} and put it in {folder} (or set {MODELS_ENV} to the folder that "
        f"holds it), or pass model=<path to a cellpose weights file>.")


def _use_gpu(gpu) -> bool:
    if gpu == "auto":
        import torch

        return bool(torch.cuda.is_available())
    return bool(gpu)


@functools.lru_cache(maxsize=2)
def _load_model(weights: str, gpu: bool):
    from cellpose import models

    # bfloat16 halves GPU memory; on CPU float32 is both faster and exact
    return models.CellposeModel(gpu=gpu, pretrained_model=weights, use_bfloat16=gpu)


def cellpose_segment(
    image,
    *,
    model: str | os.PathLike = DEFAULTS.cellpose_model,
    diameter: float | None = None,
    flow_threshold: float = DEFAULTS.flow_threshold,
    cellprob_threshold: float = DEFAULTS.cellprob_threshold,
    gpu="auto",
    allow_download: bool = False,
    exclude_border: bool = DEFAULTS.exclude_border,
) -> np.ndarray:
    """Segment with a real cellpose 4 model; returns (H, W) int32 instance labels.

    ``gpu``: "auto" (CUDA when available), True or False. ``diameter`` in pixels (None: the
    model's own scale). Missing weights raise :class:`WeightsNotFoundError` before any loading.
    """
    from skimage.segmentation import clear_border, relabel_sequential

    from napari_reddino.io.image_checks import validate_image

    rgb = validate_image(image)
    weights = resolve_cellpose_weights(model, allow_download=allow_download)
    net = _load_model(str(weights.resolve()), _use_gpu(gpu))
    masks = net.eval(rgb, channel_axis=2, diameter=diameter, flow_threshold=flow_threshold,
                     cellprob_threshold=cellprob_threshold)[0]
    labels = np.asarray(masks).astype(np.int32)
    if exclude_border:
        labels = clear_border(labels)
    return relabel_sequential(labels)[0].astype(np.int32)
