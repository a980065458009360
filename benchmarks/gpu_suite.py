"""Everything worth measuring when a GPU is lent, in one table (run by ``gpu_suite.sh``).

Rows: the plugin's embedding throughput (ViT-S/14, bf16, 224 px tiles/s through
``napari_reddino.embed.backbones.Backbone``, random weights: the GPU has no network), the training
step (img/s, TFLOP/s, MFU, peak GPU memory) of ViT-S/14 and ViT-B/14 at batch 64 per GPU in
RedDino's recipe (bf16; fp16 with the grad scaler), and a 300-step ViT-S/14 loss curve on
synthetic smears through the real loader. ``--smoke`` runs the same code tiny on the CPU (tests).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.train_throughput import PEAK_BF16_TFLOPS, flops_per_image
from training.configs import load_config
from training.train.distributed import DistEnv
from training.train.logging import peak_memory_mb, read_log
from training.train.loop import Trainer
from training.train.step import train_step


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def embedding_rate(device: torch.device, batch: int, repeats: int, arch: str) -> dict:
    from napari_reddino.embed.backbones import build_random_backbone, load_backbone

    with tempfile.TemporaryDirectory() as folder:
        build_random_backbone(folder, architecture=arch)
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


def step_rate(name: str, overrides: list[str], device: torch.device, steps: int) -> dict:
    """The model step alone on pre-built uint8 batches (the loader is measured elsewhere)."""
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(name, [f"run.output_dir={out}", "model.init_from=null",
                                 "data.synthetic=true", *overrides])  # fmt: skip
        trainer = Trainer(cfg, DistEnv(device=device))
        trainer.models.train()
        b, size = cfg.data.batch_size_per_gpu, cfg.data.global_crop_size
        grid = (size // cfg.model.patch_size) ** 2
        gen = torch.Generator().manual_seed(0)
        batch = {"global_crops": torch.randint(0, 256, (2 * b, 3, size, size), generator=gen,
                                               dtype=torch.uint8),
                 "local_crops": torch.empty(0, 3, 98, 98, dtype=torch.uint8),
                 "masks": torch.rand(2 * b, grid, generator=gen) < 0.3}  # fmt: skip
        values = trainer.schedules.at(cfg.optim.warmup_iters)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        timed = 0.0
        for i in range(steps + 2):
            _sync(device)
            tick = time.perf_counter()
            train_step(trainer.models, trainer.student, trainer.objective, trainer.optimizer,
                       batch, values, step=i, cfg=cfg, env=trainer.env,
                       scaler=trainer.scaler)  # fmt: skip
            _sync(device)
            timed += (time.perf_counter() - tick) if i >= 2 else 0.0
        img_s = steps * b / timed
        tflops = img_s * 4 * 2 * flops_per_image(cfg, trainer.models.student) / 1e12
        return {"rate": img_s, "tflops": tflops, "peak_mb": peak_memory_mb(device)}


def loss_curve(name: str, overrides: list[str], device: torch.device, every: int) -> dict:
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(name, [f"run.output_dir={out}", "model.init_from=null",
                                 "data.synthetic=true", "run.checkpoint_every=100000",
                                 *overrides])  # fmt: skip
        tick = time.perf_counter()
        Trainer(cfg, DistEnv(device=device)).fit()
        seconds = time.perf_counter() - tick
        steps = [r for r in read_log(Path(out) / "log.jsonl") if "total_loss" in r]
    shown = [r for r in steps if r["step"] % every == 0 or r is steps[-1]]
    curve = " ".join(f"{r['step']}:{r['total_loss']:.3f}" for r in shown)
    return {"rate": len(steps) * cfg.data.batch_size_per_gpu / seconds, "curve": curve}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run of every row (tests)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and not args.smoke
    if not cuda and not args.smoke:
        print("gpu_suite: no CUDA device (torch.cuda.is_available() is False); nothing measured",
              file=sys.stderr)  # fmt: skip
        return 2
    device = torch.device("cuda" if cuda else "cpu")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        gpu = torch.cuda.get_device_name(device)
        peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in gpu), None)
    else:
        gpu, peak = "cpu (smoke test: tiny shapes, not a measurement)", None
    print(f"device: {gpu}; torch {torch.__version__}")
    rows = []
    tiny = not cuda
    arch = "vit_small_patch14_dinov2"
    emb = embedding_rate(device, 8 if tiny else 256, 2 if tiny else 20, arch)
    rows.append(("embedding ViT-S/14 bf16", "tiles/s", emb))
    size_args = ["model.embed_dim=64", "model.depth=2", "model.num_heads=2", "head.out_dim=256",
                 "data.global_crop_size=56"] if tiny else []  # fmt: skip
    batch = ["data.batch_size_per_gpu=4" if tiny else "data.batch_size_per_gpu=64"]
    for label, name in (("ViT-S/14", "vits14_reddino"), ("ViT-B/14", "vitb14_reddino")):
        for precision in ("bf16", "fp16"):
            extra = [*size_args, *batch, f"run.precision={precision}", "run.compile=false"]
            row = step_rate(name, extra, device, 2 if tiny else 15)
            rows.append((f"train step {label} b64 {precision}", "img/s", row))
    curve_args = [*size_args, *batch, "run.precision=bf16", "run.compile=false",
                  f"run.iters={6 if tiny else 300}", f"data.num_workers={0 if tiny else 12}",
                  "data.synthetic_shape=448", "optim.warmup_iters=30", "run.log_every=1",
                  *(["optim.warmup_iters=1"] if tiny else [])]  # fmt: skip
    rows.append(("loss curve ViT-S/14 300 steps", "img/s", loss_curve(
        "vits14_reddino", curve_args, device, 2 if tiny else 50)))
    print(f"{'measurement':34} {'rate':>9} {'unit':7} {'TFLOP/s':>8} {'MFU':>6} {'peak MB':>8}")
    for label, unit, row in rows:
        tflops = f"{row['tflops']:8.1f}" if "tflops" in row else f"{'-':>8}"
        mfu = f"{row['tflops'] / peak:6.1%}" if "tflops" in row and peak else f"{'-':>6}"
        mem = f"{row['peak_mb']:8.0f}" if "peak_mb" in row else f"{'-':>8}"
        print(f"{label:34} {row['rate']:9.1f} {unit:7} {tflops} {mfu} {mem}")
        if "curve" in row:
            print(f"  total loss by step: {row['curve']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
