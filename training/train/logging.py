"""One JSON line per logged step: every loss term and schedule value, throughput and memory.

JSONL appends safely across resumes and loads straight into pandas (``pd.read_json(lines=True)``)
for the loss curves in ``docs/training.md``.
"""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory on CUDA, else this process's peak resident memory (MB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    scale = 1.0 if sys.platform == "darwin" else 1024.0  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


class JsonlLogger:
    """Appends records to ``path`` (main rank only) and echoes a short line to stdout."""

    def __init__(self, path: str | Path, *, enabled: bool = True, echo: bool = True,
                 tensorboard_dir: str | Path | None = None):  # fmt: skip
        self.path = Path(path)
        self.enabled = enabled
        self.echo = echo
        self.writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if enabled and tensorboard_dir is not None:
            try:  # optional: the JSONL log is the record, TensorBoard a live view of it
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                print("warning: run.tensorboard needs `pip install tensorboard`; logging to "
                      f"{self.path} only", file=sys.stderr, flush=True)  # fmt: skip
            else:
                self.writer = SummaryWriter(str(tensorboard_dir))

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        clean = {k: _jsonable(v) for k, v in record.items()}
        clean.setdefault("time", time.time())
        with open(self.path, "a") as handle:
            handle.write(json.dumps(clean) + "\n")
        if self.writer is not None and "step" in clean and "event" not in clean:
            for key, value in clean.items():
                if isinstance(value, (int, float)) and key not in ("step", "time"):
                    self.writer.add_scalar(f"train/{key}", value, clean["step"])
            self.writer.flush()
        if self.echo:
            keys = ("step", "event", "total_loss", "dino_loss", "ibot_loss", "lr", "img_per_s")
            shown = " ".join(f"{k}={_short(clean[k])}" for k in keys if k in clean)
            print(shown, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep them readable
    return value


def _short(value: Any) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def read_log(path: str | Path) -> list[dict[str, Any]]:
    """All records of a JSONL log (tests and reports)."""
    path = Path(path)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
