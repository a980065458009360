"""One optimization step of DINOv2: teacher targets, student predictions, losses, update, EMA.

Kept apart from the loop (``training.train.loop``) so the step can be driven directly by tests and
benchmarks, and so the loop only deals with data, schedules, logging and checkpoints.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from training.configs import TrainConfig
from training.data.augment import normalize
from training.losses import DINOLoss, KoLeoLoss, iBOTPatchLoss, make_centering
from training.losses.ibot import masks_weight_from_masks
from training.models.heads import cancel_last_layer_gradients
from training.models.morph_head import add_morph_loss
from training.models.student_teacher import DinoOutputs, StudentTeacher
from training.train.distributed import DistEnv, any_rank
from training.train.param_groups import apply_lr_wd

PRECISIONS = ("auto", "bf16", "fp16", "fp32")


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
        """Centered teacher probabilities: (2B, K) per global view and (n_masked, K') for iBOT."""
        cls_logits = teacher.global_cls_logits.float()
        patch_logits = teacher.masked_patch_logits.float()
        cls_probs = self.dino_center(cls_logits, temp)
        patch_probs = self.ibot_center(patch_logits, temp)
        self.dino_center.update(cls_logits)
        self.ibot_center.update(patch_logits)
        return cls_probs, patch_probs

    def losses(self, student: DinoOutputs, cls_probs: torch.Tensor, patch_probs: torch.Tensor,
               masks: torch.Tensor) -> dict[str, torch.Tensor]:  # fmt: skip
        """The loss terms of a student output against its rows of the teacher targets."""
        teacher_views = cls_probs.chunk(2)
        student_views = list(student.global_cls_logits.chunk(2))
        if student.local_cls_logits is not None:
            n_local = student.local_cls_logits.shape[0] // teacher_views[0].shape[0]
            student_views += list(student.local_cls_logits.chunk(n_local))
        terms = {"dino_loss": self.dino_loss(student_views, teacher_views)}
        terms["ibot_loss"] = self.ibot_loss.forward_masked(
            student.masked_patch_logits, patch_probs, masks_weight_from_masks(masks),
            n_images=masks.shape[0],
        )
        if self.weights["koleo"] > 0:
            terms["koleo_loss"] = sum(self.koleo_loss(v) for v in student.global_cls.chunk(2))
        total = sum(self.weights[name.removesuffix("_loss")] * value
                    for name, value in terms.items())
        terms["total_loss"] = total
        return terms

    def forward(self, student: DinoOutputs, teacher: DinoOutputs, masks: torch.Tensor,
                temp: float) -> dict[str, torch.Tensor]:
        cls_probs, patch_probs = self.teacher_targets(teacher, temp)
        return self.losses(student, cls_probs, patch_probs, masks)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``run.precision`` ("auto": bf16 on CUDA, fp32 elsewhere)."""
    if precision not in PRECISIONS:
        raise ValueError(f"run.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def autocast_context(precision: str, device: torch.device):
    """Autocast in the dtype of ``run.precision``; a no-op for fp32."""
    dtype = autocast_dtype(precision, device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def mean_over_ranks(terms: dict[str, torch.Tensor], env: DistEnv) -> dict[str, float]:
    """Loss terms averaged over ranks: the global-batch value whatever the number of processes."""
    values = torch.stack([value.detach().float() for value in terms.values()])
    if env.distributed:
        values = values.to(env.device)
        torch.distributed.all_reduce(values)
        values /= env.world_size
    return dict(zip(terms, values.tolist()))


def clip_gradients(student: nn.Module, clip: float, *, per_module: bool) -> torch.Tensor:
    """Clip to ``clip`` as one global norm, or backbone and each head on its own (DINOv2's
    ``for v in student.values(): v.clip_grad_norm_(clip)``); returns the pre-clip total norm."""
    if not per_module:
        params = [p for p in student.parameters() if p.grad is not None]
        return torch.nn.utils.clip_grad_norm_(params, clip)
    heads = {id(p) for name in ("dino_head", "ibot_head") if getattr(student, name, None)
             is not None for p in getattr(student, name).parameters()}  # fmt: skip
    groups = [[p for p in student.parameters() if id(p) not in heads]]  # backbone + mask token
    groups += [list(head.parameters()) for head in (student.dino_head, student.ibot_head)
               if head is not None]  # fmt: skip
    norms = []
    for group in groups:
        params = [p for p in group if p.grad is not None]
        if params:
            norms.append(torch.nn.utils.clip_grad_norm_(params, clip))
    return torch.linalg.vector_norm(torch.stack([n.float() for n in norms]))


def micro_batches(global_crops, local_crops, masks, n: int):
    """``n`` equal slices of a batch (rows ``[view 0 | view 1]``) with their global row indices."""
    rows = global_crops.shape[0] // 2
    if rows % n:
        raise ValueError(f"optim.grad_accum_steps={n} does not divide the per-GPU batch {rows}")
    size = rows // n
    n_local = local_crops.shape[0] // rows if rows else 0
    for i in range(n):
        part = torch.arange(i * size, (i + 1) * size, device=global_crops.device)
        index = torch.cat([part, part + rows])
        local = local_crops.unflatten(0, (n_local, rows))[:, i * size : (i + 1) * size] \
            if n_local else local_crops
        yield index, global_crops[index], local.flatten(0, 1) if n_local else local, masks[index]


def _sync_context(student: nn.Module, last: bool):
    """Reduce gradients across ranks on the last micro-batch only (DDP / FSDP2)."""
    if hasattr(student, "set_requires_gradient_sync"):  # FSDP2: set on every micro-batch
        student.set_requires_gradient_sync(last)
    elif not last and hasattr(student, "no_sync"):
        return student.no_sync()
    return contextlib.nullcontext()


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
    scaler=None,
) -> dict[str, float]:
    """Run one step; returns the loss terms and ``grad_norm`` (``skipped`` = 1 on non-finite).

    ``student`` is ``models.student`` itself or its DDP/FSDP wrapper (what gets called).
    A non-finite loss or gradient on any rank skips the update on every rank. With
    ``optim.grad_accum_steps`` > 1 the teacher targets are computed (and centered) on the whole
    batch, the student runs micro-batch by micro-batch and the gradients add up. ``scaler``
    (fp16) scales the loss; a step whose gradients overflow is skipped and logged as ``overflow``.
    """
    device = env.device
    global_crops = normalize(batch["global_crops"].to(device, non_blocking=True))
    local_crops = normalize(batch["local_crops"].to(device, non_blocking=True))
    masks = batch["masks"].to(device, non_blocking=True)
    apply_lr_wd(optimizer, values.lr, values.weight_decay, last_layer_lr=values.last_layer_lr)
    optimizer.zero_grad(set_to_none=True)
    n_micro = max(int(cfg.optim.grad_accum_steps), 1)
    with autocast_context(cfg.run.precision, device), torch.no_grad():
        teacher_out = models.teacher(global_crops, masks, mask_inputs=False)
    cls_probs, patch_probs = objective.teacher_targets(teacher_out, values.teacher_temp)
    token_rows = torch.repeat_interleave(torch.arange(masks.shape[0], device=device),
                                         masks.sum(dim=1))  # fmt: skip
    sums: dict[str, torch.Tensor] = {}
    for i, (index, crops, local, micro_masks) in enumerate(
        micro_batches(global_crops, local_crops, masks, n_micro)
    ):
        with _sync_context(student, last=i == n_micro - 1):
            with autocast_context(cfg.run.precision, device):
                student_out = student(crops, micro_masks, mask_inputs=True, local_crops=local)
            patches = patch_probs if n_micro == 1 else patch_probs[torch.isin(token_rows, index)]
            terms = objective.losses(student_out, cls_probs[index], patches, micro_masks)
            if cfg.loss.morph_weight > 0:  # BACKBONE's auxiliary head (training/models/morph_head)
                rows = index[: index.shape[0] // 2].cpu()
                cls = student_out.global_cls
                if cfg.loss.morph_views == "second":  # rows are [view 0 | view 1]
                    cls = cls.chunk(2)[1]
                terms = add_morph_loss(terms, models, cls,
                                       batch["morph_targets"][rows].to(device),
                                       cfg.loss.morph_weight)  # fmt: skip
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach() / n_micro
            if any_rank(not torch.isfinite(terms["total_loss"]).item(), env):
                optimizer.zero_grad(set_to_none=True)
                return {**mean_over_ranks(sums, env), "grad_norm": float("nan"), "skipped": 1}
            loss = terms["total_loss"] / n_micro
            (scaler.scale(loss) if scaler is not None else loss).backward()
    result = mean_over_ranks(sums, env)
    cancel_last_layer_gradients(models.student, step, cfg.optim.freeze_last_layer_iters)
    if scaler is not None:
        scaler.unscale_(optimizer)
    clip = cfg.optim.clip_grad if cfg.optim.clip_grad else float("inf")
    grad_norm = clip_gradients(models.student, clip, per_module=cfg.optim.clip_grad_per_module)
    if scaler is not None:
        scale = scaler.get_scale()
        scaler.step(optimizer)  # skips the update by itself when a gradient overflowed
        scaler.update()
        overflow = scaler.get_scale() < scale
        result["loss_scale"] = scale
        if overflow:
            optimizer.zero_grad(set_to_none=True)
            return {**result, "grad_norm": float(grad_norm), "skipped": 1, "overflow": 1}
    elif any_rank(not torch.isfinite(grad_norm).item(), env):
        optimizer.zero_grad(set_to_none=True)
        return {**result, "grad_norm": float(grad_norm), "skipped": 1}
    else:
        optimizer.step()
    models.update_teacher(values.momentum)
    return {**result, "grad_norm": float(grad_norm), "skipped": 0}
