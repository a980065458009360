"""Auxiliary head: regress each crop's interpretable morphology from the student's CLS token.

A label-free prior for small CPU runs: the targets (size, shape, central pallor, texture; the
plugin's :mod:`napari_reddino.morphology`, via :mod:`training.data.cell_bank`) come from the
segmented cell itself, and a *linear* head makes the CLS token carry them linearly, which is
what a linear probe and cosine k-NN read. The head lives beside student and teacher in
:class:`StudentTeacher` (so it is checkpointed) and gets its own AdamW group; the exported
teacher backbone never contains it.
"""

from __future__ import annotations

import torch
from torch import nn


def attach_morph_head(models: nn.Module, optimizer: torch.optim.Optimizer, n_targets: int) -> None:
    """Add ``models.morph_head`` (Linear: CLS -> targets) and its parameter group."""
    dim = models.student.backbone.embed_dim
    device = next(models.parameters()).device
    models.morph_head = nn.Linear(dim, n_targets).to(device)
    optimizer.add_param_group({"params": list(models.morph_head.parameters()),
                               "lr_multiplier": 1.0, "wd_multiplier": 0.0})


def add_morph_loss(terms: dict, models: nn.Module, student_cls: torch.Tensor,
                   targets: torch.Tensor, weight: float) -> dict:
    """``terms`` plus ``morph_loss`` (MSE over both global views), added to ``total_loss``."""
    views = student_cls.shape[0] // targets.shape[0]
    prediction = models.morph_head(student_cls.float())
    loss = nn.functional.mse_loss(prediction, targets.to(prediction).repeat(views, 1))
    return {**terms, "morph_loss": loss, "total_loss": terms["total_loss"] + weight * loss}
