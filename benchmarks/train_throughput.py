"""Training throughput per config: img/s, peak memory, and (on CUDA) MFU; SDPA vs eager attention.

    python benchmarks/train_throughput.py                       # tiny_cpu + bundled_default
    python benchmarks/train_throughput.py --configs vits14_reddino --batch 64 --steps 20
    python benchmarks/train_throughput.py --data-only --configs vits14_reddino   # loader only

The loader table times one worker (one thread) building batches from 224 px patches of real
smears (synthetic tiles when the data folder is absent), in the config's augmentation: the
baseline is the plain pipeline the loader used to run (the library's RandomFog / GlassBlur,
float32 crops normalized in the worker, every patch decoded from disk), "new" is the loader
now (identical pixels from faster transforms, uint8 crops, decoded-patch cache).

Each row times ``training.train.step.train_step`` on pre-built batches (the model step alone)
and the data stream separately (augmentation img/s on one worker). The ratio column is the
speed-up of the default fused SDPA attention over timm's eager attention, the baseline it replaces.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `training/` lives at the repo root
from training.configs import load_config
from training.data.loader import stream_from_config
from training.train.distributed import DistEnv
from training.train.logging import peak_memory_mb
from training.train.loop import Trainer
from training.train.step import train_step

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}


def flops_per_image(cfg, model) -> float:
    """Forward FLOPs of one global crop through the backbone (matmuls + attention)."""
    vit = model.backbone
    tokens = (cfg.data.global_crop_size // cfg.model.patch_size) ** 2 + vit.num_prefix_tokens
    block_params = sum(p.numel() for p in vit.blocks.parameters())
    attention = 4 * len(vit.blocks) * tokens**2 * vit.embed_dim
    return 2 * block_params * tokens + attention


def measure(name: str, overrides: list[str], steps: int, warmup: int, device: torch.device):
    with tempfile.TemporaryDirectory() as out:
        cfg = load_config(name, [f"run.output_dir={out}", *overrides])
        trainer = Trainer(cfg, DistEnv(device=device))
        stream = stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size,
                                    seed=0, rank=0, world_size=1, start_step=0)  # fmt: skip
        tick = time.perf_counter()
        batches = [stream.batch(i) for i in range(min(steps, 4))]
        data_img_s = len(batches) * stream.batch_size / (time.perf_counter() - tick)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        values = trainer.schedules.at(cfg.optim.warmup_iters)
        timed = 0.0
        for i in range(warmup + steps):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            tick = time.perf_counter()
            train_step(trainer.models, trainer.student, trainer.objective, trainer.optimizer,
                       batches[i % len(batches)], values, step=i, cfg=cfg,
                       env=trainer.env)  # fmt: skip
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= warmup:
                timed += time.perf_counter() - tick
        img_s = steps * stream.batch_size / timed
        # student fwd + bwd (3x) and teacher fwd (1x), two global crops per image
        step_flops = 4 * 2 * flops_per_image(cfg, trainer.models.student)
        achieved = img_s * step_flops / 1e12
        return {"img_s": img_s, "data_img_s": data_img_s, "tflops": achieved,
                "peak_mb": peak_memory_mb(device), "batch": stream.batch_size}  # fmt: skip


DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "chula_rbc12_dev" / "images"


def write_patches(folder: Path, n_smears: int = 40, size: int = 224) -> int:
    """224 px tiles of real smears (or synthetic ones) as PNG files, like `training patches`."""
    import imageio.v3 as iio
    import numpy as np

    smears = sorted(DATA.glob("*.jpg"))[:n_smears] if DATA.is_dir() else []
    if not smears:
        from napari_reddino.synthetic.smear import synthetic_smear

        smears = [synthetic_smear(shape=(448, 672), seed=i).image for i in range(n_smears // 4)]
    count = 0
    for smear in smears:
        image = np.asarray(iio.imread(smear) if isinstance(smear, Path) else smear)[..., :3]
        for y in range(0, image.shape[0] - size + 1, size):
            for x in range(0, image.shape[1] - size + 1, size):
                iio.imwrite(folder / f"{count:05d}.png", image[y : y + size, x : x + size])
                count += 1
    return count


def data_rates(name: str, batch: int, steps: int) -> dict[str, float]:
    """Samples (two global crops + locals) per second of one worker: baseline vs now."""
    import dataclasses

    from training.data.augment import RedDinoAugmentation, normalize

    with tempfile.TemporaryDirectory() as folder:
        n_files = write_patches(Path(folder))
        cfg = load_config(name, [f"data.patch_dirs=[{folder}]", "data.synthetic=false",
                                 f"data.batch_size_per_gpu={batch}"])  # fmt: skip
        rates = {}
        for label in ("baseline", "new", "baseline ", "new "):  # twice, interleaved: load noise
            stream = stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size,
                                        seed=0, rank=0, world_size=1, start_step=0)  # fmt: skip
            old = label.startswith("baseline")
            if old:
                spec = dataclasses.replace(stream.augment.spec, fast=False)
                stream.augment = RedDinoAugmentation(stream.augment.crops, pixel=spec)
                stream.read = stream.read.__wrapped__
            tick = time.perf_counter()
            for step in range(steps):
                out = stream.batch(step)
                if old:  # the old loader shipped normalized float32 crops
                    normalize(out["global_crops"]), normalize(out["local_crops"])
            rate = steps * batch / (time.perf_counter() - tick)
            rates[label.strip()] = max(rates.get(label.strip(), 0.0), rate)
        rates["files"] = n_files
        return rates


def print_data_table(names: list[str], batch: int, steps: int) -> None:
    print(f"{'config':18} {'patches':>7} {'baseline img/s':>14} {'new img/s':>9} {'ratio':>6}")
    for name in names:
        rates = data_rates(name, batch, steps)
        print(f"{name:18} {rates['files']:>7} {rates['baseline']:>14.1f} {rates['new']:>9.1f} "
              f"{rates['new'] / rates['baseline']:>5.2f}x")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["tiny_cpu", "bundled_default"])
    parser.add_argument("--batch", type=int, default=None, help="override batch_size_per_gpu")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data-only", action="store_true", help="only the loader table")
    parser.add_argument("--data-steps", type=int, default=4)
    args = parser.parse_args(argv)
    if args.data_only:
        import cv2

        cv2.setNumThreads(1)
        torch.set_num_threads(1)
        print("data loader, one worker, one thread; img/s = samples (2 global crops) per second")
        print_data_table(args.configs, args.batch or 16, args.data_steps)
        return 0
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_num_threads(args.threads)
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items()
                 if device.type == "cuda" and k in torch.cuda.get_device_name(device)), None)
    print(f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}"
          f" ({args.threads} CPU thread(s))")
    header = f"{'config':18} {'attn':6} {'batch':>5} {'img/s':>8} {'data img/s':>10} " \
             f"{'TFLOP/s':>8} {'MFU':>6} {'peak MB':>8} {'vs eager':>8}"
    print(header)
    for name in args.configs:
        base = ["data.patch_dirs=[]", "data.synthetic=true", f"run.threads={args.threads}",
                "model.init_from=null"]
        if args.batch:
            base.append(f"data.batch_size_per_gpu={args.batch}")
        rows = {attn: measure(name, [*base, f"model.attn={attn}"], args.steps, args.warmup, device)
                for attn in ("eager", "sdpa")}  # fmt: skip
        for attn, row in rows.items():
            mfu = f"{row['tflops'] / peak:.1%}" if peak else "-"
            ratio = row["img_s"] / rows["eager"]["img_s"]
            print(f"{name:18} {attn:6} {row['batch']:>5} {row['img_s']:>8.1f} "
                  f"{row['data_img_s']:>10.1f} {row['tflops']:>8.3f} {mfu:>6} "
                  f"{row['peak_mb']:>8.0f} {ratio:>7.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
