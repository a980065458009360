"""Teacher centering: turns teacher logits into the targets the student must match.

Without centering the teacher collapses to one prototype. DINO subtracts a running (EMA) mean of
the logits; DINOv2 (and RedDino) instead run a few Sinkhorn-Knopp iterations so that, across the
whole global batch, every prototype is used equally. Both are distributed-safe: global sums go
through ``all_reduce`` when ``torch.distributed`` is initialized, so 1 GPU and N GPUs give the
same targets for the same global batch.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

CenteringKind = Literal["ema", "sinkhorn_knopp"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (or max) ``tensor`` in place across ranks; a no-op on one process."""
    if _distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor


def _valid_rows(teacher_logits: torch.Tensor, n_masked_patches: int | torch.Tensor | None):
    """The rows that hold real tokens: iBOT pads its masked-token buffer to a fixed size."""
    logits = teacher_logits.reshape(-1, teacher_logits.shape[-1])
    if n_masked_patches is None:
        return logits, logits.shape[0]
    n_valid = int(n_masked_patches)
    if not 0 <= n_valid <= logits.shape[0]:
        raise ValueError(
            f"n_masked_patches={n_valid} but the teacher buffer only has {logits.shape[0]} rows"
        )
    return logits[:n_valid], n_valid


@torch.no_grad()
def sinkhorn_knopp(
    teacher_logits: torch.Tensor,
    temp: float,
    n_iters: int = 3,
    *,
    n_masked_patches: int | torch.Tensor | None = None,
) -> torch.Tensor:
    """Teacher probabilities with equal prototype usage over the global batch (DINOv2's SK).

    ``teacher_logits`` is (N, K) (or (..., K), flattened). Each returned row sums to 1; over the
    global batch every prototype column receives N_global / K of the mass. With
    ``n_masked_patches`` (iBOT) only the first ``n_masked_patches`` rows are real tokens: the
    batch size B of the algorithm is the all-reduced number of valid tokens, and padded rows come
    back as zeros.
    """
    if temp <= 0:
        raise ValueError(f"teacher temperature must be > 0, got {temp}")
    shape = teacher_logits.shape
    logits, n_valid = _valid_rows(teacher_logits.float(), n_masked_patches)
    n_prototypes = logits.shape[-1]
    n_global = torch.tensor(float(n_valid), device=logits.device)
    _all_reduce(n_global)
    # Subtracting the global max only rescales Q, which the first normalization removes;
    # it keeps exp() finite for any logit range.
    # A rank without tokens contributes -inf, so it never shifts the other ranks' logits.
    global_max = logits.max() if n_valid else torch.tensor(-torch.inf, device=logits.device)
    _all_reduce(global_max, "max")
    if not torch.isfinite(global_max):
        global_max = torch.zeros_like(global_max)  # no tokens on any rank: nothing to do
    q = torch.exp((logits - global_max) / temp).t()  # (K, B): prototypes x samples
    total = q.sum()
    _all_reduce(total)
    q /= total
    for _ in range(n_iters):
        row_sums = q.sum(dim=1, keepdim=True)  # mass per prototype, over all ranks
        _all_reduce(row_sums)
        q /= row_sums.clamp_min(torch.finfo(q.dtype).tiny)
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)  # each sample's column is local: no reduce
        q /= n_global
    q *= n_global
    probs = q.t()
    if n_masked_patches is not None:
        padded = torch.zeros(
            (shape[:-1].numel(), n_prototypes), dtype=probs.dtype, device=probs.device
        )
        padded[:n_valid] = probs
        probs = padded
    return probs.reshape(shape)


class SinkhornKnoppCentering(nn.Module):
    """:func:`sinkhorn_knopp` behind the common centering interface; ``update`` is a no-op."""

    def __init__(self, n_iters: int = 3):
        super().__init__()
        self.n_iters = n_iters

    def forward(self, teacher_logits: torch.Tensor, temp: float, **kw) -> torch.Tensor:
        return sinkhorn_knopp(teacher_logits, temp, self.n_iters, **kw)

    def update(self, teacher_logits: torch.Tensor | None = None, **kw) -> None:
        """Sinkhorn-Knopp keeps no state between steps."""


class EMACenter(nn.Module):
    """DINO's centering: softmax((logits - c) / temp) with c an EMA of the global batch mean.

    ``center_vector`` is a buffer, so it is saved with the training checkpoint.
    """

    def __init__(self, dim: int, momentum: float = 0.9):
        super().__init__()
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"center momentum must be in [0, 1], got {momentum}")
        self.momentum = momentum
        self.register_buffer("center_vector", torch.zeros(1, dim))

    @torch.no_grad()
    def center(
        self,
        teacher_logits: torch.Tensor,
        temp: float,
        *,
        n_masked_patches: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Centered, sharpened teacher probabilities (rows sum to 1; padded rows are zeros)."""
        if temp <= 0:
            raise ValueError(f"teacher temperature must be > 0, got {temp}")
        probs = F.softmax((teacher_logits.float() - self.center_vector) / temp, dim=-1)
        if n_masked_patches is not None:
            flat = probs.reshape(-1, probs.shape[-1])
            _valid_rows(flat, n_masked_patches)  # validates the count
            flat[int(n_masked_patches) :] = 0.0
        return probs

    def forward(self, teacher_logits: torch.Tensor, temp: float, **kw) -> torch.Tensor:
        return self.center(teacher_logits, temp, **kw)

    @torch.no_grad()
    def update(
        self,
        teacher_logits: torch.Tensor,
        *,
        n_masked_patches: int | torch.Tensor | None = None,
    ) -> None:
        """Move the center towards the mean logit of this step's global batch."""
        logits, n_valid = _valid_rows(teacher_logits.float(), n_masked_patches)
        batch_sum = logits.sum(dim=0, keepdim=True)
        count = torch.tensor(float(n_valid), device=logits.device)
        _all_reduce(batch_sum)
        _all_reduce(count)
        if count.item() == 0:
            return
        batch_mean = batch_sum / count
        self.center_vector.mul_(self.momentum).add_(batch_mean * (1.0 - self.momentum))


def make_centering(
    kind: CenteringKind, dim: int, *, momentum: float = 0.9, n_iters: int = 3
) -> EMACenter | SinkhornKnoppCentering:
    """The centering named by a config: ``"ema"`` (DINO) or ``"sinkhorn_knopp"`` (DINOv2).

    Both are called as ``centering(teacher_logits, temp, **kw) -> probs`` and have ``update``.
    """
    if kind == "ema":
        return EMACenter(dim, momentum=momentum)
    if kind == "sinkhorn_knopp":
        return SinkhornKnoppCentering(n_iters=n_iters)
    raise ValueError(f"unknown centering {kind!r}: use 'ema' or 'sinkhorn_knopp'")
