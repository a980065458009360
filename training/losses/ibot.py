"""iBOT masked-patch loss: the student predicts the teacher's tokens at patches it cannot see."""

from __future__ import annotations

import torch
from torch import nn

from training.losses.dino import cross_entropy_to_targets


def masks_weight_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """DINOv2's token weights: every masked token of image b weighs ``1 / n_masked(b)``.

    ``masks`` is (B, N) bool; the result has one entry per masked token, in ``masks[masks]`` order.
    """
    masks = masks.reshape(masks.shape[0], -1).bool()
    per_image = 1.0 / masks.sum(dim=-1).clamp(min=1).float()
    return per_image.unsqueeze(-1).expand_as(masks)[masks]


class iBOTPatchLoss(nn.Module):
    """Cross-entropy at masked patch tokens, weighted so every masked image counts equally.

    Without the per-image weights an image with many masked tokens would dominate the loss.
    """

    def __init__(self, student_temp: float = 0.1):
        super().__init__()
        if student_temp <= 0:
            raise ValueError(f"student temperature must be > 0, got {student_temp}")
        self.student_temp = student_temp

    def forward_masked(
        self,
        student_patch_logits_masked: torch.Tensor,
        teacher_patch_probs_masked: torch.Tensor,
        masks_weight: torch.Tensor,
        *,
        n_masked_patches: int | torch.Tensor | None = None,
        n_images: int | None = None,
    ) -> torch.Tensor:
        """Loss over the masked tokens only, each given as (n_masked_total, K).

        ``masks_weight`` (n_masked_total,) is ``1 / n_masked(b)`` for the image b of each token
        (see :func:`masks_weight_from_masks`). The weighted sum is divided by ``n_images`` when
        given (DINOv2 divides by the whole batch, unmasked images included), else by the number of
        masked images, i.e. the plain mean over masked images. ``n_masked_patches`` drops padded
        rows at the end of fixed-size buffers.
        """
        if student_patch_logits_masked.shape != teacher_patch_probs_masked.shape:
            raise ValueError(
                f"student tokens {tuple(student_patch_logits_masked.shape)} and teacher tokens "
                f"{tuple(teacher_patch_probs_masked.shape)} differ"
            )
        if n_masked_patches is not None:
            n_valid = int(n_masked_patches)
            student_patch_logits_masked = student_patch_logits_masked[:n_valid]
            teacher_patch_probs_masked = teacher_patch_probs_masked[:n_valid]
            masks_weight = masks_weight[:n_valid]
        if masks_weight.shape[0] != student_patch_logits_masked.shape[0]:
            raise ValueError(
                f"{masks_weight.shape[0]} token weights for "
                f"{student_patch_logits_masked.shape[0]} masked tokens"
            )
        per_token = cross_entropy_to_targets(
            student_patch_logits_masked, teacher_patch_probs_masked, self.student_temp
        )
        weights = masks_weight.float()
        if n_images is None:
            n_images_float = weights.sum()  # each masked image's weights sum to 1
        else:
            n_images_float = torch.tensor(float(n_images), device=weights.device)
        if float(n_images_float) == 0.0:
            return per_token.sum() * 0.0  # nothing masked: zero, still in the graph
        return (per_token * weights).sum() / n_images_float

    def forward(
        self,
        student_patch_logits: torch.Tensor,
        teacher_patch_probs: torch.Tensor,
        masks: torch.Tensor,
    ) -> torch.Tensor:
        """Same loss from full token grids (B, N, K) and the (B, N) bool masks."""
        masks = masks.reshape(masks.shape[0], -1).bool()
        return self.forward_masked(
            student_patch_logits[masks],
            teacher_patch_probs[masks],
            masks_weight_from_masks(masks),
            n_images=masks.shape[0],
        )
