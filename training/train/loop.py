"""The training loop: build everything from a config, resume if a checkpoint exists, train, log.

Run as ``torchrun --nproc_per_node N -m training train --config X.yaml [section.key=value ...]``
(or plain ``python -m training train ...`` for one process).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from training.configs import ConfigError, TrainConfig, resume_differences, save_config
from training.data.cell_bank import bank_stream_from_config, n_bank_targets
from training.data.loader import build_loader, stream_from_config
from training.models.morph_head import attach_morph_head
from training.models.student_teacher import StudentTeacher
from training.train import checkpoint as ckpt
from training.train.distributed import (
    DistEnv,
    any_rank,
    broadcast_flag,
    broadcast_object,
    cleanup,
    full_state,
    gather_objects,
    init_distributed,
    load_full_state,
    load_sharded,
    save_sharded,
    shard_teacher,
    wrap_student,
)
from training.train.logging import JsonlLogger, peak_memory_mb
from training.train.param_groups import build_param_groups
from training.train.preemption import StopSignal
from training.train.schedules import CosineSchedule, scaled_lr
from training.train.step import Objective, StepValues, autocast_dtype, train_step


@dataclass
class Schedules:
    """Per-iteration values; rebuilt from the config, or restored from a checkpoint on resume."""

    lr: CosineSchedule
    weight_decay: CosineSchedule
    momentum: CosineSchedule
    teacher_temp: CosineSchedule
    freeze_last_layer_iters: int

    def at(self, step: int) -> StepValues:
        lr = self.lr[step]
        return StepValues(
            lr=lr,
            weight_decay=self.weight_decay[step],
            momentum=self.momentum[step],
            teacher_temp=self.teacher_temp[step],
            last_layer_lr=0.0 if step < self.freeze_last_layer_iters else lr,
        )

    def state_dict(self) -> dict:
        names = ("lr", "weight_decay", "momentum", "teacher_temp")
        state = {name: getattr(self, name).state_dict() for name in names}
        return {**state, "freeze_last_layer_iters": self.freeze_last_layer_iters}

    @classmethod
    def from_state_dict(cls, state: dict) -> Schedules:
        names = ("lr", "weight_decay", "momentum", "teacher_temp")
        built = {name: CosineSchedule.from_state_dict(state[name]) for name in names}
        return cls(**built, freeze_last_layer_iters=state["freeze_last_layer_iters"])


def peak_lr(cfg: TrainConfig, global_batch: int) -> float:
    """The base lr scaled to the global batch (RedDino/DINOv2: sqrt rule against 1024)."""
    rule = cfg.optim.lr_scaling
    if rule == "sqrt":
        return scaled_lr(cfg.optim.base_lr, global_batch, cfg.optim.reference_batch)
    if rule == "linear":
        return cfg.optim.base_lr * global_batch / cfg.optim.reference_batch
    if rule == "none":
        return cfg.optim.base_lr
    raise ValueError(f"optim.lr_scaling must be sqrt, linear or none, got {rule!r}")


def build_schedules(cfg: TrainConfig, global_batch: int) -> Schedules:
    iters, optim, teacher = cfg.run.iters, cfg.optim, cfg.teacher
    return Schedules(
        lr=CosineSchedule(peak_lr(cfg, global_batch), optim.min_lr, iters, optim.warmup_iters),
        weight_decay=CosineSchedule(optim.weight_decay, optim.weight_decay_end, iters),
        momentum=CosineSchedule(teacher.momentum_start, teacher.momentum_end, iters),
        # DINOv2/RedDino: a warm-up longer than the run stops part-way (RedDino: 30 of 10 epochs)
        teacher_temp=CosineSchedule(
            teacher.temp, teacher.temp, max(iters, teacher.temp_warmup_iters),
            teacher.temp_warmup_iters, start_warmup=teacher.temp_warmup_start,
        ),
        freeze_last_layer_iters=optim.freeze_last_layer_iters,
    )


def build_optimizer(models: StudentTeacher, cfg: TrainConfig, device: torch.device):
    """AdamW over DINOv2's parameter groups; the fused kernel on CUDA."""
    groups = build_param_groups(
        models.student,
        weight_decay=cfg.optim.weight_decay,
        layer_decay=cfg.optim.layerwise_decay,
        patch_embed_lr_mult=cfg.optim.patch_embed_lr_mult,
    )
    return torch.optim.AdamW(
        groups, betas=(cfg.optim.beta1, cfg.optim.beta2), fused=device.type == "cuda"
    )


def make_grad_scaler(cfg: TrainConfig, env: DistEnv, *, sharded: bool):
    """fp16 needs loss scaling; sharded gradients need the scaler that agrees across ranks."""
    if autocast_dtype(cfg.run.precision, env.device) != torch.float16:
        return None
    if sharded:
        from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

        return ShardedGradScaler(device=env.device.type)
    return torch.amp.GradScaler(env.device.type)


class Trainer:
    """Owns the models, optimizer, schedules and checkpoints of one run."""

    def __init__(self, cfg: TrainConfig, env: DistEnv):
        self.cfg, self.env = cfg, env
        self.out = Path(cfg.run.output_dir)
        if cfg.run.threads and env.device.type == "cpu":
            torch.set_num_threads(cfg.run.threads)
        torch.manual_seed(cfg.run.seed)  # same initial student AND teacher on every rank
        self.global_batch = cfg.data.batch_size_per_gpu * env.world_size
        self.models = StudentTeacher(cfg.model, cfg.head, cfg.data.global_crop_size).to(env.device)
        torch.manual_seed(cfg.run.seed + env.rank)  # per-rank stochastic depth
        self.objective = Objective(cfg).to(env.device)
        if cfg.run.compile:
            for model in (self.models.student, self.models.teacher):
                for block in model.backbone.blocks:
                    block.compile(dynamic=True)
        # wrap before building the optimizer: FSDP replaces the parameters by sharded ones
        if cfg.model.activation_checkpointing:
            self.models.student.activation_checkpointing = True
        self.student = wrap_student(self.models.student, env, cfg.run.strategy, run=cfg.run)
        self.sharded = env.distributed and cfg.run.strategy == "fsdp"
        if self.sharded:
            shard_teacher(self.models.teacher, run=cfg.run)
        self.scaler = make_grad_scaler(cfg, env, sharded=self.sharded)
        self.optimizer = build_optimizer(self.models, cfg, env.device)
        if cfg.loss.morph_weight > 0:  # auxiliary morphology head (training/models/morph_head.py)
            if cfg.loss.morph_views not in ("both", "second"):
                raise ValueError(f"loss.morph_views must be 'both' or 'second', "
                                 f"got {cfg.loss.morph_views!r}")
            n_targets = n_bank_targets(cfg.data.cell_bank, cfg.data.morph_exclude)
            attach_morph_head(self.models, self.optimizer, n_targets)
        self.schedules = build_schedules(cfg, self.global_batch)
        self.start_step = 0
        self.logger = JsonlLogger(self.out / "log.jsonl", enabled=env.is_main,
                                  tensorboard_dir=self.out / "tb" if cfg.run.tensorboard else None)
        self._resume()

    def _resume(self) -> None:
        # rank 0 picks the checkpoint (falling back past unreadable ones) and every rank loads it
        found = ckpt.newest_readable(self.out, warn=self._warn) if self.env.is_main else None
        path = broadcast_object(str(found[0]) if found else None, self.env)
        if path is None:
            return
        state = found[1] if found else ckpt.load_checkpoint(path)
        changed = resume_differences(state.get("config"), self.cfg)
        if changed:
            raise ConfigError(
                f"{self.out} holds a checkpoint of a run with other settings ({'; '.join(changed)})"
                "; resuming would silently drop them. Resume with the run's own settings (only "
                "run.stop_after / run.max_minutes, logging, checkpointing and data.num_workers "
                "may change; run.iters is the schedules' length, fixed for a run) or give a "
                "new run.output_dir"
            )
        if state.get("format") == "dcp":
            load_sharded(path, self.models, self.optimizer)
        else:
            load_full_state(self.models, self.optimizer, state, sharded=self.sharded)
        self.objective.load_state_dict(state["objective"])
        self.schedules = Schedules.from_state_dict(state["schedules"])
        rng_states = state["rng"]
        if len(rng_states) != self.env.world_size:
            raise ValueError(
                f"{path} was written by {len(rng_states)} processes; resume with the same number "
                f"(this run has {self.env.world_size})"
            )
        ckpt.set_rng_state(rng_states[self.env.rank])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.start_step = state["step"] + 1
        self.logger.log({"event": "resume", "step": state["step"], "checkpoint": str(path)})

    def _warn(self, message: str) -> None:
        print(f"warning: {message}", file=sys.stderr, flush=True)
        self.logger.log({"event": "warning", "message": message})

    def save(self, step: int) -> None:
        rng_states = gather_objects(ckpt.rng_state(), self.env)
        if self.cfg.run.checkpoint_format not in ("full", "sharded"):
            raise ValueError("run.checkpoint_format must be 'full' or 'sharded', got "
                             f"{self.cfg.run.checkpoint_format!r}")  # fmt: skip
        if self.cfg.run.checkpoint_format == "sharded":
            tmp = self.out / f".checkpoint_{step:07d}.dcp.tmp"  # the same name on every rank
            save_sharded(tmp, self.models, self.optimizer,
                         meta={"step": step, "config": self.cfg.to_dict()})
            models_state = optimizer_state = None
        else:
            models_state, optimizer_state = full_state(self.models, self.optimizer,
                                                       sharded=self.sharded)  # fmt: skip
        if not self.env.is_main:
            return
        state = {
            "objective": self.objective.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "schedules": self.schedules.state_dict(),
            "rng": rng_states,
            "config": self.cfg.to_dict(),
            "global_batch": self.global_batch,
        }
        keep = self.cfg.run.keep_checkpoints
        if models_state is None:
            path = ckpt.finish_sharded(tmp, step, state, keep=keep)
        else:
            state = {"models": models_state, "optimizer": optimizer_state, **state}
            path = ckpt.save_checkpoint(self.out, step, state, keep=keep)
        self.logger.log({"event": "checkpoint", "step": step, "path": str(path)})

    def fit(self) -> int:
        """Train to ``run.iters`` / ``run.stop_after`` / ``run.max_minutes``; return last step."""
        cfg, env = self.cfg, self.env
        stop = min(cfg.run.iters, cfg.run.stop_after or cfg.run.iters)
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.out / "config.yaml")
        make_stream = bank_stream_from_config if cfg.data.cell_bank else stream_from_config
        stream = make_stream(
            cfg.data, cfg.mask, patch_size=cfg.model.patch_size, seed=cfg.run.seed,
            rank=env.rank, world_size=env.world_size, start_step=self.start_step,
        )
        loader = build_loader(stream, num_workers=cfg.data.num_workers,
                              pin_memory=env.device.type == "cuda", seed=cfg.run.seed)
        self.models.train()
        started = time.monotonic()
        # the handler stays through the final checkpoint: the launcher signals its workers one
        # by one, so a rank can get its SIGTERM after another rank's signal already stopped all
        with StopSignal() as stop_signal:
            last_step = self._steps(loader, stop, started, stop_signal)
            if last_step >= self.start_step:
                self.save(last_step)
            self.logger.log({"event": "end", "step": last_step, "signal": stop_signal.received,
                             "minutes": (time.monotonic() - started) / 60})
        return last_step

    def _steps(self, loader, stop: int, started: float, stop_signal: StopSignal) -> int:
        """The training steps, until ``stop``, the time limit or a stop signal; the last one."""
        cfg, env = self.cfg, self.env
        last_ckpt_time = started
        tick, last_step, bad_steps = time.monotonic(), self.start_step - 1, 0
        for batch in loader if self.start_step < stop else []:
            step = int(batch["step"])
            values = self.schedules.at(step)
            terms = train_step(self.models, self.student, self.objective, self.optimizer, batch,
                               values, step=step, cfg=cfg, env=env, scaler=self.scaler)
            # an fp16 overflow is the grad scaler's normal search for its scale, not a bad step
            bad_steps = bad_steps + 1 if terms["skipped"] and not terms.get("overflow") else 0
            now = time.monotonic()
            if step % cfg.run.log_every == 0 or terms["skipped"]:
                self.logger.log({"step": step, **terms, **values.__dict__,
                                 "img_per_s": self.global_batch / max(now - tick, 1e-9),
                                 "peak_mem_mb": peak_memory_mb(env.device)})
            tick, last_step = now, step
            if bad_steps >= cfg.run.nan_abort_after:
                raise FloatingPointError(
                    f"{bad_steps} consecutive non-finite steps (last {step}): lower optim.base_lr "
                    "or check the data; the last good checkpoint is kept"
                )
            limit = cfg.run.max_minutes
            out_of_time = limit is not None and now - started > limit * 60
            minutes = cfg.run.checkpoint_every_minutes
            due = (step + 1) % cfg.run.checkpoint_every == 0 or (
                minutes is not None and now - last_ckpt_time > minutes * 60
            )
            out_of_time, due = broadcast_flag(out_of_time, env), broadcast_flag(due, env)
            signaled = any_rank(stop_signal.received is not None, env)
            if step + 1 >= stop or out_of_time or signaled:
                break
            if due:
                self.save(step)
                last_ckpt_time = time.monotonic()
        return last_step


def train(cfg: TrainConfig) -> int:
    """Train with ``cfg`` in this (torchrun) process; returns the last step done."""
    env = init_distributed()
    try:
        return Trainer(cfg, env).fit()
    finally:
        cleanup()
