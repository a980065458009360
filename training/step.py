"""One optimisation step of DINOv2: teacher targets, student predictions, losses, update, EMA.

Kept apart from the loop (``training.train``) so the step can be driven directly by tests and
benchmarks, and so the loop only deals with data, schedules, logging and checkpoints.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from training.centering import make_centering
from training.config import TrainConfig
from training.distributed import DistEnv, any_rank
from training.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss
from training.losses.ibot import masks_weight_from_masks
from training.models.heads import cancel_last_layer_gradients
from training.models.student_teacher import DinoOutputs, StudentTeacher
from training.param_groups import apply_lr_wd


@dataclass(frozen=True)
class StepValues:
    """Schedule values for one iteration."""

    lr: float
    weight_decay: float
    momentum: float
    teacher_temp: float
    last_layer_lr: float


class Objective(nn.Module):
    """DINO + iBOT + KoLeo with their teacher centerings (whose EMA buffers get checkpointed)."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        loss = cfg.loss
        self.weights = {"dino": loss.dino_weight, "ibot": loss.ibot_weight,
                        "koleo": loss.koleo_weight}
        ibot_dim = (cfg.head.ibot_out_dim or cfg.head.out_dim) if cfg.head.ibot_separate_head \
            else cfg.head.out_dim
        self.dino_loss = DINOLoss(loss.student_temp)
        self.ibot_loss = iBOTPatchLoss(loss.student_temp)
        self.koleo_loss = KoLeoLoss()
        self.dino_center = make_centering(loss.centering, cfg.head.out_dim)
        self.ibot_center = make_centering(loss.centering, ibot_dim)

    @torch.no_grad()
    def teacher_targets(self, teacher: DinoOutputs, temp: float):
        """Centered teacher probabilities: per global view (DINO) and per masked token (iBOT)."""
        cls_logits = teacher.global_cls_logits.float()
        patch_logits = teacher.masked_patch_logits.float()
        cls_probs = self.dino_center(cls_logits, temp)
        patch_probs = self.ibot_center(patch_logits, temp)
        self.dino_center.update(cls_logits)
        self.ibot_center.update(patch_logits)
        return cls_probs.chunk(2), patch_probs

    def forward(self, student: DinoOutputs, teacher: DinoOutputs, masks: torch.Tensor,
                temp: float) -> dict[str, torch.Tensor]:
        teacher_views, teacher_patches = self.teacher_targets(teacher, temp)
        student_views = list(student.global_cls_logits.chunk(2))
        if student.local_cls_logits is not None:
            n_local = student.local_cls_logits.shape[0] // teacher_views[0].shape[0]
            student_views += list(student.local_cls_logits.chunk(n_local))
        terms = {"dino_loss": self.dino_loss(student_views, teacher_views)}
        terms["ibot_loss"] = self.ibot_loss.forward_masked(
            student.masked_patch_logits, teacher_patches, masks_weight_from_masks(masks),
            n_images=masks.shape[0],
        )
        if self.weights["koleo"] > 0:
            terms["koleo_loss"] = sum(self.koleo_loss(v) for v in student.global_cls.chunk(2))
        total = sum(self.weights[name.removesuffix("_loss")] * value
                    for name, value in terms.items())
        terms["total_loss"] = total
        return terms


def autocast_context(precision: str, device: torch.device):
    """bf16 autocast on CUDA by default ("auto"), full fp32 on CPU unless asked otherwise."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"run.precision must be auto, bf16 or fp32, got {precision!r}")
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def mean_over_ranks(terms: dict[str, torch.Tensor], env: DistEnv) -> dict[str, float]:
    """Loss terms averaged over ranks: the global-batch value whatever the number of processes."""
    values = torch.stack([value.detach().float() for value in terms.values()])
    if env.distributed:
        values = values.to(env.device)
        torch.distributed.all_reduce(values)
        values /= env.world_size
    return dict(zip(terms, values.tolist()))


def train_step(
    models: StudentTeacher,
    student: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, torch.Tensor],
    values: StepValues,
    *,
    step: int,
    cfg: TrainConfig,
    env: DistEnv,
) -> dict[str, float]:
    """Run one step; returns the loss terms and ``grad_norm`` (``skipped`` = 1 on non-finite).

    ``student`` is ``models.student`` itself or its DDP/FSDP wrapper (what gets called).
    A non-finite loss or gradient on any rank skips the update on every rank.
    """
    device = env.device
    global_crops = batch["global_crops"].to(device, non_blocking=True)
    local_crops = batch["local_crops"].to(device, non_blocking=True)
    masks = batch["masks"].to(device, non_blocking=True)
    apply_lr_wd(optimizer, values.lr, values.weight_decay, last_layer_lr=values.last_layer_lr)
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(cfg.run.precision, device):
        with torch.no_grad():
            teacher_out = models.teacher(global_crops, masks, mask_inputs=False)
        student_out = student(global_crops, masks, mask_inputs=True, local_crops=local_crops)
    terms = objective(student_out, teacher_out, masks, values.teacher_temp)
    total = terms["total_loss"]
    result = mean_over_ranks(terms, env)
    if any_rank(not torch.isfinite(total).item(), env):
        return {**result, "grad_norm": float("nan"), "skipped": 1}
    total.backward()
    cancel_last_layer_gradients(models.student, step, cfg.optim.freeze_last_layer_iters)
    params = [p for p in models.student.parameters() if p.grad is not None]
    clip = cfg.optim.clip_grad if cfg.optim.clip_grad else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if any_rank(not torch.isfinite(grad_norm).item(), env):
        optimizer.zero_grad(set_to_none=True)
        return {**result, "grad_norm": float(grad_norm), "skipped": 1}
    optimizer.step()
    models.update_teacher(values.momentum)
    return {**result, "grad_norm": float(grad_norm), "skipped": 0}
