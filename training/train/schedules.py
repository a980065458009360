"""Per-iteration schedules (lr, weight decay, teacher momentum, teacher temperature).

Precomputed as arrays like DINOv2's: the training loop just indexes ``schedule[it]``, and resuming
from a checkpoint needs nothing but the iteration number.
"""

from __future__ import annotations

import math

import numpy as np


class CosineSchedule:
    """``freeze_iters`` zeros, linear warmup to ``base``, then a cosine from ``base`` to ``final``.

    The cosine reaches ``final`` exactly at the last iteration; indexing past ``total_iters``
    returns ``final``.
    """

    def __init__(
        self,
        base: float,
        final: float,
        total_iters: int,
        warmup_iters: int = 0,
        start_warmup: float = 0.0,
        freeze_iters: int = 0,
    ):
        if min(total_iters, warmup_iters, freeze_iters) < 0:
            raise ValueError("iteration counts must be >= 0")
        if warmup_iters + freeze_iters > total_iters:
            raise ValueError(
                f"warmup_iters ({warmup_iters}) + freeze_iters ({freeze_iters}) exceed "
                f"total_iters ({total_iters})"
            )
        self.base = float(base)
        self.final = float(final)
        self.total_iters = int(total_iters)
        self.warmup_iters = int(warmup_iters)
        self.start_warmup = float(start_warmup)
        self.freeze_iters = int(freeze_iters)
        n_cosine = total_iters - warmup_iters - freeze_iters
        # Warmup ends one step below base so that the cosine's first value is base itself.
        warmup = np.linspace(start_warmup, base, warmup_iters, endpoint=False)
        progress = np.arange(n_cosine) / max(n_cosine - 1, 1)
        cosine = final + 0.5 * (base - final) * (1.0 + np.cos(math.pi * progress))
        self.values = np.concatenate([np.zeros(freeze_iters), warmup, cosine])

    def __len__(self) -> int:
        return self.total_iters

    def __getitem__(self, it: int) -> float:
        if it < 0:
            raise IndexError(f"iteration must be >= 0, got {it}")
        if it >= self.total_iters:
            return self.final
        return float(self.values[it])

    def state_dict(self) -> dict:
        """The parameters that rebuild this schedule (saved in training checkpoints)."""
        return {
            "base": self.base,
            "final": self.final,
            "total_iters": self.total_iters,
            "warmup_iters": self.warmup_iters,
            "start_warmup": self.start_warmup,
            "freeze_iters": self.freeze_iters,
        }

    def load_state_dict(self, state: dict) -> None:
        self.__init__(**state)

    @classmethod
    def from_state_dict(cls, state: dict) -> CosineSchedule:
        return cls(**state)


def scaled_lr(base_lr: float, batch_size: int, ref: int = 1024) -> float:
    """DINOv2's square-root rule: ``base_lr * sqrt(batch_size / ref)`` for the global batch."""
    if batch_size <= 0 or ref <= 0:
        raise ValueError(f"batch_size and ref must be > 0, got {batch_size} and {ref}")
    return base_lr * math.sqrt(batch_size / ref)
