"""Atomic, complete training checkpoints: a ``kill -9`` at any moment resumes at the same step.

A checkpoint is written to a temporary file and ``os.replace``-d into place, so a crash mid-write
leaves the previous checkpoint intact. It holds everything the next step depends on: student,
teacher, centering buffers, optimizer moments, grad scaler, the schedules, the step (which is
also the data-loader position, see ``training.data.loader``) and every rank's RNG states.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core.multiarray import _reconstruct

# What a checkpoint holds beyond tensors and plain values: numpy's RNG state (an ndarray).
# Only these are unpickled (weights_only=True): a crafted checkpoint cannot run code.
_SAFE_GLOBALS = [
    _reconstruct, (_reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype,
    *(type(np.dtype(t)) for t in (np.uint32, np.int64, np.float64, np.float32, np.bool_)),
]
_NAME = re.compile(r"^checkpoint_(\d{7})\.(pt|dcp)$")  # .dcp: a sharded (DCP) folder
META = "meta.pt"  # a sharded checkpoint's small, rank-0 part (everything but model / optimizer)
# Inside the shards too (step + config as JSON text), so that the single file torch's
# ``format_utils dcp_to_torch`` makes of a sharded checkpoint still says what it is
DCP_META_KEY = "training_meta"


def checkpoint_path(folder: str | Path, step: int) -> Path:
    return Path(folder) / f"checkpoint_{step:07d}.pt"


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the complete checkpoints in ``folder``, oldest first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def remove_checkpoint(path: Path) -> None:
    """Delete a checkpoint file or sharded checkpoint folder."""
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def prune(folder: str | Path, keep: int) -> None:
    """Keep only the newest ``keep`` checkpoints (all when ``keep`` <= 0)."""
    for _, old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        remove_checkpoint(old)


def latest_checkpoint(folder: str | Path) -> Path | None:
    found = list_checkpoints(folder)
    return found[-1][1] if found else None


def newest_readable(folder: str | Path, warn=print) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that loads, and its state; unreadable newer ones are reported.

    A checkpoint cut short (a full disk, a copy interrupted) must not stop a resume when the
    previous one is intact.
    """
    for _, path in reversed(list_checkpoints(folder)):
        try:
            return path, load_checkpoint(path)
        except ValueError as err:
            warn(f"{err}; resuming from the previous checkpoint instead")
    return None


def rng_state() -> dict[str, Any]:
    """This process's random generators (torch CPU/CUDA, numpy, python)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - global state libraries use
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(folder: str | Path, step: int, state: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``state`` as the checkpoint of ``step`` atomically; keep only the newest ``keep``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(folder, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        torch.save({**state, "step": step}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    prune(folder, keep)
    return final


def finish_sharded(tmp: Path, step: int, meta: dict[str, Any], *, keep: int = 2) -> Path:
    """Rank 0, after every rank wrote its shards into ``tmp``: add the metadata, then rename.

    The rename makes the folder a checkpoint only once it is complete, as for single files.
    """
    with open(tmp / META, "wb") as handle:
        torch.save({**meta, "step": step, "format": "dcp"}, handle)
        handle.flush()
        os.fsync(handle.fileno())
    final = checkpoint_path(tmp.parent, step).with_suffix(".dcp")
    remove_checkpoint(final)
    os.replace(tmp, final)
    prune(tmp.parent, keep)
    return final


def is_sharded_checkpoint(path: str | Path) -> bool:
    """A DCP folder (ours or any ``dcp.save`` output), not a run folder that holds checkpoints."""
    path = Path(path)
    return path.is_dir() and ((path / META).is_file() or (path / ".metadata").is_file())


def load_checkpoint(path: str | Path, *, weights_only_ok: bool = False) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (onto the CPU).

    Also reads the file ``format_utils dcp_to_torch`` makes of a sharded checkpoint (its step and
    config come from :data:`DCP_META_KEY`). ``weights_only_ok``: a file with ``models`` but no
    step is accepted too (export needs only the weights; a resume needs everything).
    """
    path = Path(path)
    sharded = path.is_dir()
    if sharded:
        path = path / META  # the shards are read into the live (sharded) model on resume
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # never pass on torch's hint to set weights_only=False: the file could run code
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        if found is None:  # garbage or cut short, not a foreign object
            detail = re.search(r"WeightsUnpickler error:\s*(.+)", str(err))
            raise ValueError(f"{path} is not a readable training checkpoint (damaged, or not a "
                             f"torch file: {detail.group(1) if detail else 'unpickling failed'})"
                             ) from err
        raise ValueError(
            f"{path} was refused: it holds objects other than tensors, numbers, text and numpy "
            f"arrays (it asks for {found.group(1)}), which a checkpoint written by training "
            "never does; a crafted file "
            "could run code when loaded, so it was not loaded. Use a checkpoint from "
            "`python -m training train`") from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"{path} is not a readable training checkpoint: {err}") from err
    if isinstance(state, dict) and isinstance(state.get(DCP_META_KEY), str) and "step" not in state:
        state = {**state, **json.loads(state.pop(DCP_META_KEY))}  # a converted sharded one
    if not isinstance(state, dict) or not (sharded or "models" in state):
        raise ValueError(f"{path} is not a training checkpoint (no 'models')")
    if "step" not in state and not weights_only_ok:
        raise ValueError(f"{path} is not a training checkpoint (no 'step'); a file made by "
                         "format_utils dcp_to_torch can be exported, not resumed from")
    return state
