"""DINO projection head: MLP -> L2 normalize -> weight-normalized prototype layer.

With unit-norm inputs and prototypes of norm 1 (weight_g fixed to 1), the logits are cosine
similarities to the prototypes; the teacher temperature alone sets how sharp the targets are.
"""

from __future__ import annotations

import itertools

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce
from torch.nn.utils.parametrizations import weight_norm


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm over the *global* batch on any backend (torch's SyncBatchNorm is CUDA-only).

    In training mode under torch.distributed, the per-feature sums are all-reduced with an
    autograd-aware all_reduce, so N ranks normalize, back-propagate and update their running
    statistics exactly as one process holding the whole batch would. Otherwise plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        count = torch.tensor([float(x.shape[0])], device=x.device)
        dist.all_reduce(count)
        mean = differentiable_all_reduce(x.sum(0)) / count  # two passes, as BatchNorm does
        var = differentiable_all_reduce(((x - mean) ** 2).sum(0)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum
                unbiased = var * count / (count - 1).clamp_min(1)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(unbiased.detach(), alpha=m)
        out = (x - mean) * torch.rsqrt(var + self.eps)
        return out * self.weight + self.bias if self.affine else out


def _build_mlp(
    nlayers: int, in_dim: int, hidden_dim: int, bottleneck_dim: int, use_bn: bool
) -> nn.Module:
    if nlayers == 1:
        return nn.Linear(in_dim, bottleneck_dim)
    layers: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (nlayers - 1)
    for layer_in, layer_out in itertools.pairwise(dims):
        layers.append(nn.Linear(layer_in, layer_out))
        if use_bn:
            layers.append(GlobalBatchNorm1d(layer_out))
        layers.append(nn.GELU())
    layers.append(nn.Linear(hidden_dim, bottleneck_dim))
    return nn.Sequential(*layers)


class DINOHead(nn.Module):
    """Projects backbone tokens (..., in_dim) to prototype logits (..., out_dim)."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden_dim: int = 2048,
        bottleneck_dim: int = 256,
        nlayers: int = 3,
        norm_last_layer: bool = True,
        use_bn: bool = False,
    ):
        super().__init__()
        if nlayers < 1:
            raise ValueError(f"the head needs at least one layer, got nlayers={nlayers}")
        self.use_bn = use_bn
        self.mlp = _build_mlp(nlayers, in_dim, hidden_dim, bottleneck_dim, use_bn)
        self.apply(self._init_weights)
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        magnitude = self.last_layer.parametrizations.weight.original0
        magnitude.data.fill_(1.0)
        # norm_last_layer: prototypes stay unit vectors for the whole training (DINO's default).
        magnitude.requires_grad = not norm_last_layer

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lead_shape = tokens.shape[:-1]
        projected = self.mlp(tokens.reshape(-1, tokens.shape[-1]))
        eps = 1e-6 if projected.dtype == torch.float16 else 1e-12
        projected = F.normalize(projected, dim=-1, p=2, eps=eps)
        logits = self.last_layer(projected)
        return logits.reshape(*lead_shape, logits.shape[-1])


def cancel_last_layer_gradients(head: nn.Module, epoch_or_step: int, freeze_until: int) -> None:
    """Drop the prototype layer's gradients while ``epoch_or_step < freeze_until``.

    Freezing the prototypes early stabilizes training (DINO's ``freeze_last_layer``). ``head``
    may be a :class:`DINOHead` or any module holding heads (parameters named ``*last_layer*``).
    Call between ``backward()`` and ``optimizer.step()``.
    """
    if epoch_or_step >= freeze_until:
        return
    for name, param in head.named_parameters():
        if "last_layer" in name:
            param.grad = None
