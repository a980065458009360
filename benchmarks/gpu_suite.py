"""Everything worth measuring when GPUs are lent, one table row at a time (run by ``gpu_suite.sh``).

Runs under ``torchrun`` over every visible GPU. Rows: the training step of the ViT-S/14 and
ViT-B/14 RedDino recipes at their own per-GPU batch (280 / 196), precision and torch.compile,
with DDP and with FSDP (img/s over all GPUs, step time, TFLOP/s counting the DINO and iBOT heads
with their 131k prototypes, MFU, peak memory); the official DINOv2 trainer's step on the same
GPUs and batch when its code is present (``DINOV2_SRC``); the plugin's embedding throughput; and
a loss curve through the real loop and loader. Each row is printed (and flushed) as it finishes,
so a timeout loses only the rows not yet measured. ``--smoke``: the same code, tiny, on the CPU
over Gloo (tests).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.train_throughput import PEAK_BF16_TFLOPS
from training.configs import load_config
from training.train.distributed import DistEnv, cleanup, init_distributed
from training.train.logging import peak_memory_mb, read_log
from training.train.loop import Trainer
from training.train.step import train_step

COLUMNS = (f"{'measurement':44} {'rate':>9} {'unit':6} {'step ms':>8} {'TFLOP/s':>8} "
           f"{'MFU':>6} {'peak MB':>8}")  # fmt: skip
RECIPES = (("ViT-S/14", "vits14_reddino"), ("ViT-B/14", "vitb14_reddino"))
# --smoke: the recipes' code paths at toy sizes (CPU kernels; compile would only add minutes)
TINY = ["model.embed_dim=64", "model.depth=2", "model.num_heads=2", "head.out_dim=256",
        "head.hidden_dim=128", "head.bottleneck_dim=32", "data.global_crop_size=56",
        "data.batch_size_per_gpu=4", "run.compile=false", "run.precision=bf16",
        "run.fsdp_param_dtype=null", "run.fsdp_reduce_dtype=null"]  # fmt: skip
NOT_PRESENT = "official dinov2: code not present, set DINOV2_SRC"
CENTERING = {"ema": "centering"}  # our loss.centering -> DINOv2's train.centering


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def row(label: str, values: dict | None = None, unit: str = "img/s", peak=None) -> None:
    """Print one finished row now (a timeout later loses nothing already measured)."""
    values = values or {}

    def cell(key: str, width: int, fmt: str) -> str:
        return format(values[key], f"{width}{fmt}") if key in values else f"{'-':>{width}}"

    mfu = f"{values['tflops'] / peak:6.1%}" if "tflops" in values and peak else f"{'-':>6}"
    print(f"{label:44} {cell('rate', 9, '.1f')} {unit:6} {cell('step_ms', 8, '.1f')} "
          f"{cell('tflops', 8, '.1f')} {mfu} {cell('peak_mb', 8, '.0f')}", flush=True)  # fmt: skip
    if "curve" in values:
        print(f"  total loss by step: {values['curve']}", flush=True)


def _linear_macs(module: torch.nn.Module | None) -> int:
    """Multiply-adds per token of a head (its Linear layers, the prototype layer included)."""
    if module is None:
        return 0
    return sum(m.in_features * m.out_features for m in module.modules()
               if isinstance(m, torch.nn.Linear))  # fmt: skip


def backbone_flops(vit: torch.nn.Module, size: int, patch: int) -> tuple[float, float]:
    """Forward FLOPs of one crop: (patch embedding, blocks' matmuls + attention scores)."""
    grid = (size // patch) ** 2
    tokens = grid + vit.num_prefix_tokens
    block_params = sum(p.numel() for n, p in vit.blocks.named_parameters() if n.endswith("weight"))
    attention = 4 * len(vit.blocks) * tokens**2 * vit.embed_dim
    return 2 * grid * 3 * patch * patch * vit.embed_dim, 2 * block_params * tokens + attention


def step_flops(cfg, models, batch: dict) -> float:
    """One process's training-step FLOPs, heads included: the student's forward + backward (3x
    forward; 2x for the patch embedding, whose input needs no gradient) and the teacher's
    forward, over the 2B global crops, the local crops, the CLS tokens through the DINO head
    and the masked patches through the iBOT head (shared or separate)."""
    student = models.student
    vit, patch = student.backbone, cfg.model.patch_size
    n_global, n_masked = batch["global_crops"].shape[0], int(batch["masks"].sum())
    n_local, local_size = batch["local_crops"].shape[0], batch["local_crops"].shape[-1]
    dino = _linear_macs(student.dino_head)
    ibot = _linear_macs(student.ibot_head) or dino
    embed, blocks = backbone_flops(vit, cfg.data.global_crop_size, patch)
    teacher = n_global * (embed + blocks) + 2 * (n_global * dino + n_masked * ibot)
    student_flops = 3 * teacher - n_global * embed
    if n_local:
        embed, blocks = backbone_flops(vit, local_size, patch)
        student_flops += n_local * (2 * embed + 3 * blocks + 3 * 2 * dino)
    return student_flops + teacher


def _batch(cfg, rank: int) -> dict:
    """A uint8 batch as the loader yields it (each rank its own), RedDino-like masks."""
    b, size, patch = cfg.data.batch_size_per_gpu, cfg.data.global_crop_size, cfg.model.patch_size
    gen = torch.Generator().manual_seed(rank)
    local = cfg.data.local_crops_number * b
    grid = (size // patch) ** 2
    masked = torch.rand(2 * b, 1, generator=gen) < cfg.mask.probability
    ratio = torch.empty(2 * b, 1).uniform_(cfg.mask.ratio_min, cfg.mask.ratio_max, generator=gen)
    return {"global_crops": torch.randint(0, 256, (2 * b, 3, size, size), generator=gen,
                                          dtype=torch.uint8),
            "local_crops": torch.randint(0, 256, (local, 3, cfg.data.local_crop_size,
                                                  cfg.data.local_crop_size), generator=gen,
                                         dtype=torch.uint8),
            "masks": masked & (torch.rand(2 * b, grid, generator=gen) < ratio)}  # fmt: skip


def step_rate(name: str, overrides: list[str], env: DistEnv, steps: int, warmup: int) -> dict:
    """Our training step on every process (DDP / FSDP as configured), the loader left out."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(name, [f"run.output_dir={out}", "model.init_from=null",
                                 "data.synthetic=true", *overrides])  # fmt: skip
        trainer = Trainer(cfg, env)
        trainer.models.train()
        batch = _batch(cfg, env.rank)
        if env.device.type == "cuda":  # as the loader hands it over (pin_memory)
            batch = {key: value.pin_memory() for key, value in batch.items()}
        values = trainer.schedules.at(cfg.optim.warmup_iters)
        if env.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(env.device)
        timed = 0.0
        for i in range(warmup + steps):  # the first steps compile the blocks
            _sync(env.device)
            tick = time.perf_counter()
            train_step(trainer.models, trainer.student, trainer.objective, trainer.optimizer,
                       batch, values, step=i, cfg=cfg, env=env, scaler=trainer.scaler)  # fmt: skip
            _sync(env.device)
            timed += (time.perf_counter() - tick) if i >= warmup else 0.0
        seconds = timed / steps
        flops = step_flops(cfg, trainer.models, batch)
        result = {"rate": env.world_size * cfg.data.batch_size_per_gpu / seconds,
                  "step_ms": 1000 * seconds, "tflops": env.world_size * flops / seconds / 1e12,
                  "peak_mb": peak_memory_mb(env.device)}  # fmt: skip
        del trainer
    torch._dynamo.reset()  # each row compiles its own blocks (and never hits the recompile limit)
    gc.collect()
    if env.device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def embedding_rate(device: torch.device, batch: int, repeats: int) -> dict:
    """The plugin's ViT-S/14 forward (random weights: the lent GPU has no network)."""
    from napari_reddino.embed.backbones import build_random_backbone, load_backbone

    with tempfile.TemporaryDirectory() as folder:
        build_random_backbone(folder, architecture="vit_small_patch14_dinov2")
        dtype = "bfloat16" if device.type == "cuda" else "float32"
        backbone = load_backbone(f"local-dir:{folder}", device=str(device), dtype=dtype)
    tiles = np.random.default_rng(0).integers(0, 256, (batch, 224, 224, 3), dtype=np.uint8)
    backbone.forward(tiles)  # warm-up (kernels, cudnn autotune)
    _sync(device)
    tick = time.perf_counter()
    for _ in range(repeats):
        backbone.forward(tiles)
    _sync(device)
    return {"rate": batch * repeats / (time.perf_counter() - tick)}


def loss_curve(overrides: list[str], env: DistEnv, every: int) -> dict:
    """The whole loop (loader, logging, checkpoint) on synthetic smears, every process."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config("vits14_reddino", [f"run.output_dir={out}", "model.init_from=null",
                                             "data.synthetic=true", "run.checkpoint_every=100000",
                                             "run.log_every=1", *overrides])  # fmt: skip
        tick = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # the loop's own log lines: not the table
            Trainer(cfg, env).fit()
        seconds = time.perf_counter() - tick
        steps = [r for r in read_log(Path(out) / "log.jsonl") if "total_loss" in r]
    shown = [r for r in steps if r["step"] % every == 0 or r is steps[-1]]
    return {"rate": len(steps) * cfg.data.batch_size_per_gpu * env.world_size / seconds,
            "curve": " ".join(f"{r['step']}:{r['total_loss']:.3f}" for r in shown)}


def ours(env: DistEnv, smoke: bool, peak) -> None:
    """Our rows: DDP and FSDP steps of each recipe, then the plugin's embedding rate."""
    size = TINY if smoke else []
    for label, name in RECIPES:
        cfg = load_config(name, size)
        for strategy in ("ddp", "fsdp"):
            label_row = (f"train {label} {strategy} x{env.world_size} "
                         f"b{cfg.data.batch_size_per_gpu} {cfg.run.precision}"
                         f"{' compiled' if cfg.run.compile else ''}")  # fmt: skip
            try:
                values = step_rate(name, [*size, f"run.strategy={strategy}"], env,
                                   steps=1 if smoke else 10, warmup=1 if smoke else 3)  # fmt: skip
            except torch.cuda.OutOfMemoryError:  # same shapes on every GPU: all ranks get here
                gc.collect()
                torch.cuda.empty_cache()
                label_row, values = f"{label_row}: out of memory", {}
            if env.is_main:
                row(label_row, values, peak=peak)
    if env.is_main:
        row("embedding ViT-S/14 (plugin, 1 GPU)", embedding_rate(
            env.device, 2 if smoke else 256, 1 if smoke else 20), unit="tile/s")  # fmt: skip


def curve(env: DistEnv, smoke: bool) -> None:
    size = [*TINY, "run.iters=6", "data.num_workers=0", "data.synthetic_shape=192",
            "optim.warmup_iters=1"] if smoke else ["run.iters=100", "optim.warmup_iters=30",
                                                   "data.synthetic_shape=448"]  # fmt: skip
    values = loss_curve([*size, "run.strategy=ddp"], env, 2 if smoke else 20)
    if env.is_main:
        row(f"loss curve ViT-S/14 ddp x{env.world_size} {6 if smoke else 100} steps", values)


def _official_step(src: Path, recipe, steps: int, warmup: int) -> dict:
    """DINOv2's own train.py step (its SSLMetaArch, FSDP, fp16 scaler, schedules, collate) on
    the recipe's model, prototypes, batch and masking; random crops, its default config else.

    RedDino's run: one local crop, which DINOv2 forwards (its loss term is skipped) and which it
    needs (its collate stacks them); ours has none, so this row does ~20% more backbone work.
    """
    sys.path.insert(0, str(src))
    from dinov2.data import MaskingGenerator, collate_data_and_cast
    from dinov2.train.ssl_meta_arch import SSLMetaArch
    from dinov2.train.train import (
        apply_optim_scheduler,
        build_optimizer,
        build_schedulers,
        get_args_parser,
    )
    from dinov2.utils.config import setup

    size, patch = recipe.data.global_crop_size, recipe.model.patch_size
    arch = recipe.model.arch.split("_patch")[0]  # vit_small_patch14_dinov2 -> vit_small
    with tempfile.TemporaryDirectory() as out:
        args = get_args_parser().parse_args([
            "--config-file", str(src / "dinov2/configs/ssl_default_config.yaml"),
            "--output-dir", out, f"student.arch={arch}", f"student.patch_size={patch}",
            f"train.batch_size_per_gpu={recipe.data.batch_size_per_gpu}",
            f"dino.head_n_prototypes={recipe.head.out_dim}",
            f"ibot.head_n_prototypes={recipe.head.out_dim}",
            f"ibot.separate_head={str(recipe.head.ibot_separate_head).lower()}",
            f"crops.global_crops_size={size}", "crops.local_crops_number=1",
            f"dino.koleo_loss_weight={recipe.loss.koleo_weight}",
            f"train.centering={CENTERING.get(recipe.loss.centering, recipe.loss.centering)}",
            "student.drop_path_rate=0.0",
        ])  # fmt: skip
        cfg = setup(args)  # joins torchrun's process group (NCCL), as train.py does
        model = SSLMetaArch(cfg).to(torch.device("cuda"))
        model.prepare_for_distributed_training()
        model.train()
        optimizer = build_optimizer(cfg, model.get_params_groups())
        lr, wd, momentum, temp, last_lr = build_schedulers(cfg)
        grid = size // patch
        crops = [({"global_crops": [torch.randn(3, size, size) for _ in range(2)],
                   "local_crops": [torch.randn(3, cfg.crops.local_crops_size,
                                               cfg.crops.local_crops_size)]}, ())
                 for _ in range(cfg.train.batch_size_per_gpu)]  # fmt: skip
        data = collate_data_and_cast(
            crops, mask_ratio_tuple=cfg.ibot.mask_ratio_min_max,
            mask_probability=cfg.ibot.mask_sample_probability, dtype=torch.half,
            n_tokens=grid * grid,
            mask_generator=MaskingGenerator(input_size=(grid, grid),
                                            max_num_patches=0.5 * grid * grid),
        )  # fmt: skip
        torch.cuda.reset_peak_memory_stats()
        timed, it = 0.0, cfg.optim.warmup_epochs * cfg.train.OFFICIAL_EPOCH_LENGTH
        for i in range(warmup + steps):  # train.py's loop body
            torch.cuda.synchronize()
            tick = time.perf_counter()
            apply_optim_scheduler(optimizer, lr[it], wd[it], last_lr[it])
            optimizer.zero_grad(set_to_none=True)
            model.forward_backward(data, teacher_temp=temp[it])
            if model.fp16_scaler is not None:
                model.fp16_scaler.unscale_(optimizer)
                for v in model.student.values():
                    v.clip_grad_norm_(cfg.optim.clip_grad)
                model.fp16_scaler.step(optimizer)
                model.fp16_scaler.update()
            else:
                for v in model.student.values():
                    v.clip_grad_norm_(cfg.optim.clip_grad)
                optimizer.step()
            model.update_teacher(momentum[it])
            torch.cuda.synchronize()
            timed += (time.perf_counter() - tick) if i >= warmup else 0.0
    world = torch.distributed.get_world_size()
    seconds = timed / steps
    return {"rate": world * cfg.train.batch_size_per_gpu / seconds, "step_ms": 1000 * seconds,
            "peak_mb": torch.cuda.max_memory_allocated() / 2**20}  # fmt: skip


def official(smoke: bool) -> int:
    """The official DINOv2 trainer's rows, or one row saying why there are none."""
    src = os.environ.get("DINOV2_SRC")
    if not src or not (Path(src) / "dinov2" / "train" / "train.py").is_file():
        print(NOT_PRESENT + (f" (nothing at {src})" if src else ""), flush=True)
        return 0
    if smoke or not torch.cuda.is_available():
        print("official dinov2: needs CUDA (its trainer is CUDA-only); not run", flush=True)
        return 0
    label, name = RECIPES[0]
    recipe = load_config(name, [])
    rank0 = int(os.environ.get("RANK", "0")) == 0
    try:
        values = _official_step(Path(src), recipe, steps=10, warmup=3)
    except Exception as err:  # a foreign trainer's failure is a row, not a crash
        if rank0:
            print(f"official dinov2 {label}: failed: {type(err).__name__}: "
                  f"{str(err).splitlines()[0][:120] if str(err) else ''}", flush=True)  # fmt: skip
        return 0
    if rank0:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        row(f"official dinov2 {label} fsdp x{world} b{recipe.data.batch_size_per_gpu} fp16 "
            "+1 local", values)  # fmt: skip
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of every row (tests)")
    parser.add_argument("--part", choices=("ours", "official", "curve"), default="ours")
    parser.add_argument("--header", action="store_true", help="print the table's header first")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("gpu_suite: no CUDA device (torch.cuda.is_available() is False); nothing measured",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.part == "official":
        return official(args.smoke)
    env = init_distributed("cuda" if cuda else "cpu")
    try:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = True
            gpu = torch.cuda.get_device_name(env.device)
            peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
        else:
            gpu, peak = "cpu over gloo (smoke test: tiny shapes, not a measurement)", None
        if args.header and env.is_main:
            print(f"device: {env.world_size} x {gpu}; torch {torch.__version__}; "
                  f"{os.cpu_count()} CPUs", flush=True)  # fmt: skip
            print(COLUMNS, flush=True)
        if args.part == "ours":
            ours(env, args.smoke, peak)
        else:
            curve(env, args.smoke)
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
