"""Image-level DINO loss: the student's view of an image must predict the teacher's other views."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def cross_entropy_to_targets(
    student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float
) -> torch.Tensor:
    """Per-row ``-sum(p_teacher * log_softmax(z_student / T_s))``, shape ``logits.shape[:-1]``."""
    log_probs = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    return -(teacher_probs.float() * log_probs).sum(dim=-1)


class DINOLoss(nn.Module):
    """Cross-entropy between teacher targets and student predictions, over pairs of views.

    The student list holds the global views first (in the same order as the teacher list), then
    any local crops. Each (student view, teacher view) pair counts once, except a global view
    against itself (it would only teach the identity); the mean over those pairs is returned, so
    the scale does not depend on the number of crops.
    """

    def __init__(self, student_temp: float = 0.1):
        super().__init__()
        if student_temp <= 0:
            raise ValueError(f"student temperature must be > 0, got {student_temp}")
        self.student_temp = student_temp

    def forward(
        self,
        student_logits_list: Sequence[torch.Tensor],
        teacher_probs_list: Sequence[torch.Tensor],
    ) -> torch.Tensor:
        if not student_logits_list or not teacher_probs_list:
            raise ValueError("DINOLoss needs at least one student and one teacher view")
        if len(student_logits_list) < len(teacher_probs_list):
            raise ValueError(
                f"{len(student_logits_list)} student views for {len(teacher_probs_list)} teacher "
                "views: the student list must start with the teacher's (global) views"
            )
        total = student_logits_list[0].new_zeros((), dtype=torch.float32)
        n_pairs = 0
        for teacher_index, teacher_probs in enumerate(teacher_probs_list):
            for student_index, student_logits in enumerate(student_logits_list):
                if student_index == teacher_index:
                    continue
                if student_logits.shape != teacher_probs.shape:
                    raise ValueError(
                        f"student view {student_index} has shape {tuple(student_logits.shape)}, "
                        f"teacher view {teacher_index} {tuple(teacher_probs.shape)}"
                    )
                total = (
                    total
                    + cross_entropy_to_targets(
                        student_logits, teacher_probs, self.student_temp
                    ).mean()
                )
                n_pairs += 1
        if n_pairs == 0:
            raise ValueError("one global view and no local crops leave no (student, teacher) pair")
        return total / n_pairs
