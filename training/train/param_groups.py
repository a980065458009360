"""Optimizer parameter groups for a ViT: no decay on norms/biases/gammas, layer-wise lr decay.

Each group carries ``lr_multiplier`` and ``wd_multiplier``; every step the loop sets
``lr = lr_schedule[it] * lr_multiplier`` and ``weight_decay = wd_schedule[it] * wd_multiplier``
(:func:`apply_lr_wd`). Layer decay lets the lower blocks of a pretrained backbone move less than
the top ones, which is how RedDino continues from DINOv2 weights without forgetting them.
"""

from __future__ import annotations

import re

import torch
from torch import nn

_BLOCK_INDEX = re.compile(r"(?:^|\.)blocks\.(\d+)\.")
_EMBEDDING_NAMES = (
    "pos_embed",
    "patch_embed",
    "cls_token",
    "reg_token",
    "register_tokens",
    "mask_token",
)


def _leaf(name: str) -> str:
    return name.rsplit(".", 1)[-1]


def layer_id(name: str, num_layers: int) -> int:
    """0 for embeddings/tokens, i + 1 for block i, ``num_layers + 1`` for the rest (norm, heads)."""
    if any(token in name.split(".") for token in _EMBEDDING_NAMES):
        return 0
    match = _BLOCK_INDEX.search(name)
    if match:
        return int(match.group(1)) + 1
    return num_layers + 1


def no_weight_decay(name: str) -> bool:
    """Biases, norms and LayerScale gammas: no decay. As DINOv2 (get_params_groups_with_decay),
    the position embedding and the learnt tokens (CLS, registers, mask) are decayed."""
    parts = name.split(".")
    return name.endswith(".bias") or any("norm" in part for part in parts) or _leaf(name) == "gamma"


def _count_blocks(model: nn.Module) -> int:
    indices = {
        int(match.group(1))
        for name, _ in model.named_parameters()
        if (match := _BLOCK_INDEX.search(name))
    }
    return max(indices) + 1 if indices else 0


def build_param_groups(
    model: nn.Module,
    *,
    weight_decay: float,
    layer_decay: float = 1.0,
    patch_embed_lr_mult: float = 1.0,
    num_layers: int | None = None,
) -> list[dict]:
    """Parameter groups for ``torch.optim.AdamW(groups)``, fused by identical multipliers.

    ``lr_multiplier = layer_decay ** (num_layers + 1 - layer_id)`` (times ``patch_embed_lr_mult``
    for the patch embedding); ``wd_multiplier`` is 0 or 1. Groups also hold ``weight_decay``
    (already multiplied), ``is_last_layer`` (prototype layers, frozen early in training) and
    ``names``. ``num_layers`` defaults to the number of ``blocks.<i>`` found in the model.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ValueError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if num_layers is None:
        num_layers = _count_blocks(model)
    fused: dict[tuple, dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        lr_multiplier = layer_decay ** (num_layers + 1 - layer_id(name, num_layers))
        if "patch_embed" in name.split("."):
            lr_multiplier *= patch_embed_lr_mult
        wd_multiplier = 0.0 if no_weight_decay(name) else 1.0
        is_last_layer = "last_layer" in name
        key = (lr_multiplier, wd_multiplier, is_last_layer)
        group = fused.setdefault(
            key,
            {
                "params": [],
                "names": [],
                "lr_multiplier": lr_multiplier,
                "wd_multiplier": wd_multiplier,
                "weight_decay": weight_decay * wd_multiplier,
                "is_last_layer": is_last_layer,
            },
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(fused.values())


def apply_lr_wd(
    optimizer: torch.optim.Optimizer,
    lr: float,
    weight_decay: float,
    *,
    last_layer_lr: float | None = None,
) -> None:
    """Set this step's lr and weight decay on every group, through its multipliers.

    ``last_layer_lr`` (e.g. 0 while the prototypes are frozen) replaces ``lr`` for groups marked
    ``is_last_layer``.
    """
    for group in optimizer.param_groups:
        group_lr = lr
        if last_layer_lr is not None and group.get("is_last_layer", False):
            group_lr = last_layer_lr
        group["lr"] = group_lr * group.get("lr_multiplier", 1.0)
        group["weight_decay"] = weight_decay * group.get("wd_multiplier", 1.0)
