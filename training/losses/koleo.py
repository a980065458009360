"""KoLeo regularizer (Kozachenko-Leonenko entropy estimate): spreads features over the sphere.

RedDino sets its weight to 0 (cells of one class are near-duplicates and KoLeo pushed them
apart); it stays available for ablations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """``-mean_i log(d_i + eps)`` with d_i the distance from feature i to its nearest neighbor."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(
                f"KoLeo needs a (B, D) batch with B >= 2, got shape {tuple(features.shape)}"
            )
        normalized = F.normalize(features.float(), p=2, dim=-1, eps=self.eps)
        # The nearest neighbor on the sphere has the largest dot product; ignore each point itself.
        with torch.no_grad():
            dots = normalized @ normalized.t()
            dots.fill_diagonal_(-2.0)
            nearest = dots.argmax(dim=1)
        distances = (normalized - normalized[nearest]).norm(p=2, dim=-1)
        return -torch.log(distances + self.eps).mean()
