"""The config schema: nested dicts (merged YAML) -> typed dataclasses, one per concern.

One dataclass per concern so a config file reads like the DINOv2 / RedDino recipe it mirrors, and a
mistyped value fails loudly instead of silently training the wrong model. The field defaults are
``default.yaml``'s values (a test keeps the two equal); merging files is ``training.configs``'.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config file or override that cannot be turned into a :class:`TrainConfig`."""


@dataclass
class ModelConfig:
    """The ViT backbone: a timm architecture name plus the knobs DINOv2 trains with."""

    arch: str = "vit_small_patch14_dinov2"
    embed_dim: int | None = None  # None: the architecture's own width
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int = 14
    num_register_tokens: int = 0
    drop_path_rate: float = 0.0
    layerscale_init: float | None = 1e-5
    init_from: str | None = None  # None: scratch; else a backbone name / timm id
    attn: str = "sdpa"  # "sdpa" (fused attention) or "eager"
    activation_checkpointing: bool = False  # recompute each student block in backward (memory)


@dataclass
class HeadConfig:
    """DINO / iBOT projection heads (prototypes = out_dim)."""

    out_dim: int = 65536
    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    nlayers: int = 3
    use_bn: bool = False  # BatchNorm in the head MLP (DINO's use_bn_in_head; helps small batches)
    ibot_separate_head: bool = False  # RedDino shares one head between DINO and iBOT
    ibot_out_dim: int | None = None


@dataclass
class LossConfig:
    """Loss weights and the teacher-centering method."""

    dino_weight: float = 1.0
    ibot_weight: float = 1.0
    koleo_weight: float = 0.1
    morph_weight: float = 0.0  # aux head: CLS -> cell morphology (needs data.cell_bank)
    morph_views: str = "both"  # global views it regresses from: "both" | "second" (the milder)
    centering: str = "sinkhorn_knopp"  # or "ema"
    student_temp: float = 0.1


@dataclass
class MaskConfig:
    """iBOT masking of the student's global crops."""

    probability: float = 0.5
    ratio_min: float = 0.1
    ratio_max: float = 0.5


@dataclass
class TeacherConfig:
    """EMA teacher: momentum schedule and temperature warmup."""

    momentum_start: float = 0.994
    momentum_end: float = 1.0
    temp_warmup_start: float = 0.04
    temp: float = 0.07
    temp_warmup_iters: int = 0


@dataclass
class OptimConfig:
    """AdamW with cosine lr / wd schedules and DINOv2's parameter-group multipliers."""

    base_lr: float = 2e-4
    lr_scaling: str = "sqrt"  # "sqrt" | "linear" | "none" (relative to reference_batch)
    reference_batch: int = 1024
    min_lr: float = 1e-6
    warmup_iters: int = 0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.2
    beta1: float = 0.9
    beta2: float = 0.999
    clip_grad: float | None = 3.0
    layerwise_decay: float = 0.9
    patch_embed_lr_mult: float = 0.2
    freeze_last_layer_iters: int = 0
    grad_accum_steps: int = 1  # split each per-GPU batch into this many student micro-batches
    clip_grad_per_module: bool = False  # clip backbone and heads separately (DINOv2 / RedDino)


@dataclass
class DataConfig:
    """Where images come from and how they are augmented into DINO crops."""

    patch_dirs: list[str] = field(default_factory=list)
    shards: list[str] = field(default_factory=list)  # patch-shard manifests (training/data/shards)
    verify_shards: bool = True  # sha256 of each shard on its first read in a process
    synthetic: bool = False
    synthetic_fraction: float = 0.5  # share of samples from the generator when both sources exist
    synthetic_shape: int = 512
    synthetic_tile: int = 224  # side of the tiles cut from generated smears (match patch_dirs)
    synthetic_mode: str = "tiles"  # "tiles" of whole smears, or "cells": a crop around one cell
    batch_size_per_gpu: int = 8
    num_workers: int = 0
    global_crop_size: int = 224
    global_crop_scale: tuple[float, float] = (0.32, 1.0)
    global_crop_ratio: tuple[float, float] = (0.75, 4 / 3)  # aspect range; [1, 1] keeps shapes
    local_crops_number: int = 0
    local_crop_size: int = 98
    local_crop_scale: tuple[float, float] = (0.05, 0.32)
    pixel_transforms: int = 4  # how many of the 33 pixel-level transforms per sample (A.SomeOf n)
    second_view_pixel_transforms: int | None = None  # milder 2nd global view (None: same)
    pixel_transform_p: float = 1.0  # each drawn transform acts with this probability (RedDino 0.85)
    flip_p: float = 0.5  # horizontal / vertical flip and 90-degree turn probability (RedDino 0.85)
    transform_params: str = "tuned"  # "tuned" (milder) or "library" defaults (RedDino)
    transform_args: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> kwargs
    resize_before_crop: int | None = None  # square side images are resized to first (RedDino 224)
    cell_bank: list[str] = field(default_factory=list)  # .npz banks (training/data/cell_bank.py)
    morph_exclude: list[str] = field(default_factory=list)  # families/features not regressed


@dataclass
class RunConfig:
    """Run length, output, checkpointing, precision and distribution."""

    output_dir: str = "runs/train"
    seed: int = 0
    iters: int = 1000  # schedule length
    stop_after: int | None = None  # stop early at this step (schedules still span `iters`)
    max_minutes: float | None = None  # wall-clock cap; a checkpoint is written when it hits
    checkpoint_every: int = 100  # iterations
    checkpoint_every_minutes: float | None = None
    keep_checkpoints: int = 2
    log_every: int = 1
    precision: str = "auto"  # "auto" (bf16 on CUDA, fp32 on CPU) | "bf16" | "fp16" | "fp32"
    compile: bool = False
    strategy: str = "ddp"  # "ddp" | "fsdp"
    fsdp_param_dtype: str | None = None  # FSDP MixedPrecisionPolicy: "bf16" | "fp16" | "fp32"
    fsdp_reduce_dtype: str | None = None  # dtype of the gradient reduce-scatter
    fsdp_reshard_after_forward: bool = True  # False keeps gathered weights (SHARD_GRAD_OP)
    checkpoint_format: str = "full"  # "full" (one file, rank 0) | "sharded" (DCP folder)
    tensorboard: bool = False  # also write TensorBoard events under output_dir/tb
    threads: int | None = None  # torch.set_num_threads on CPU
    nan_abort_after: int = 10  # consecutive non-finite steps before giving up


@dataclass
class TrainConfig:
    """The whole run; every section maps to one key of the YAML file."""

    model: ModelConfig = field(default_factory=ModelConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    mask: MaskConfig = field(default_factory=MaskConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def schema_keys() -> dict[str, list[str]]:
    """Every section of :class:`TrainConfig` with its keys, in declaration order."""
    return {
        section.name: [f.name for f in dataclasses.fields(section.default_factory())]
        for section in dataclasses.fields(TrainConfig)
    }


def unknown_key_message(name: str, known: list[str]) -> str:
    """``unknown key 'optim.base_lrr' (did you mean 'base_lr'?); known in optim: [...]``."""
    section, _, key = name.rpartition(".")
    kind = "key" if section else "section"
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    where = f"known in {section}" if section else "known sections"
    return f"unknown {kind} {name!r}{hint}; {where}: {known}"


def _parse_number(section: str, name: str, value: str, kind: str) -> Any:
    """YAML 1.1 reads ``2e-4`` as a string; numbers-as-strings become numbers here."""
    try:
        return float(value) if kind == "float" else int(value)
    except ValueError:
        raise ConfigError(f"{section}.{name} must be a number, got {value!r}") from None


def _coerce(section: str, name: str, value: Any, template: Any, annotation: str = "") -> Any:
    if isinstance(value, str) and "str" not in annotation:
        for kind in ("float", "int"):
            if kind in annotation.split(" | ") or kind == type(template).__name__:
                return _parse_number(section, name, value, kind)
    if isinstance(template, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(template):
            raise ConfigError(f"{section}.{name} must be a list of {len(template)} numbers")
        return tuple(float(v) for v in value)
    if isinstance(template, bool) and not isinstance(value, bool):
        raise ConfigError(f"{section}.{name} must be true/false, got {value!r}")
    if isinstance(template, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(template, dict) and not (
        isinstance(value, dict) and all(isinstance(v, dict) for v in value.values())
    ):
        raise ConfigError(f"{section}.{name} must map names to mappings of arguments")
    if isinstance(template, list) and isinstance(value, str):
        return [value]
    return value


def _build_section(cls: type, section: str, values: dict[str, Any]) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"section {section!r} must be a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            raise ConfigError(unknown_key_message(f"{section}.{key}", sorted(known)))
    default = cls()
    kwargs = {
        k: _coerce(section, k, v, getattr(default, k), str(known[k].type))
        for k, v in values.items()
    }
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (a parsed YAML file)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("a training config must be a mapping of sections")
    sections = {f.name: f.default_factory for f in dataclasses.fields(TrainConfig)}
    for name in data:
        if name not in sections:
            raise ConfigError(unknown_key_message(name, sorted(sections)))
    built = {
        name: _build_section(type(factory()), name, data.get(name, {}) or {})
        for name, factory in sections.items()
    }
    return TrainConfig(**built)
