"""Patch shards vs one PNG per patch: images/s the training loader gets on one core.

    python benchmarks/shard_loader.py                  # 20 Chula smears, 224 px tiles
    python benchmarks/shard_loader.py --smears 8 --samples 2000

Both sources are cut from the same real smears (``shared/data/chula_rbc_diseases`` beside the
checkout, taken in turn from its disease folders) by what ``python -m training patches`` runs
(``--format png``: one PNG per patch; the default: shards + manifest), and every shard sample is
checked pixel for pixel against its PNG before anything is timed.

Rows (one thread, no data-loader worker processes, each figure the best of ``--repeats``
interleaved runs on a shared machine):

* ``images``: the loader's image stage, ``SmearCropStream._image`` for consecutive global sample
  indices (what each sample of a batch reads), timed from building the stream from its config
  (the folder walk, or the manifest and the shards' size checks) and including the shards'
  first-use sha256. The baseline is the folder loader as it runs today (its LRU cache of 256
  decoded patches on); ``folder, no cache`` is every read decoded, as on a data set much
  larger than the cache.
* ``augmented``: whole batches (two 224 px global crops per sample, the RedDino recipe), to show
  how much of a training worker's time the image stage is.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `training/` lives at the repo root
import imageio.v3 as iio

from training.configs import load_config
from training.data.loader import _decoded, stream_from_config
from training.data.patches import IMAGE_SUFFIXES, extract_patches
from training.data.shards import PatchShards, load_manifest, write_patch_shards

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "chula_rbc_diseases"


def pick_smears(root: Path, n: int) -> list[Path]:
    """``n`` smears taken in turn from each disease folder (sorted): several diseases, not one."""
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    lists = [sorted(f for f in d.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
             for d in folders]  # fmt: skip
    picked = [files[i] for i in range(max(map(len, lists))) for files in lists if i < len(files)]
    if len(picked) < n:
        raise SystemExit(f"only {len(picked)} smears under {root}")
    return picked[:n]


def same_pixels(png_dir: Path, shard_dir: Path) -> int:
    """Every shard sample equals the PNG ``extract_patches`` wrote for it; returns how many."""
    manifest = load_manifest(shard_dir)
    shards = PatchShards([shard_dir])
    pngs = sorted(png_dir.glob("*.png"))
    if len(pngs) != len(shards):
        raise AssertionError(f"{len(pngs)} PNGs but {len(shards)} shard samples")
    for index, source in enumerate(manifest["sources"]):
        stem = Path(source["path"]).stem
        for k, (y, x) in enumerate(source["keys"]):
            png = iio.imread(png_dir / f"{index:05d}_{stem}_{y}_{x}.png")
            if not np.array_equal(png, shards[source["first"] + k]):
                raise AssertionError(f"sample {source['first'] + k} differs from its PNG")
    return len(shards)


def image_rate(overrides: list[str], samples: int, *, cache: bool) -> float:
    """Images/s of the stream's image stage, from building the stream (walk or manifest)."""
    cfg = load_config("vits14_reddino", [*overrides, "data.synthetic=false"])
    _decoded.cache_clear()
    tick = time.perf_counter()
    stream = stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size, seed=0,
                                rank=0, world_size=1, start_step=0)  # fmt: skip
    if not cache:
        stream.read = _decoded.__wrapped__
    for index in range(samples):
        stream._image(index, np.random.default_rng([0, index]))
    return samples / (time.perf_counter() - tick)


def batch_rate(overrides: list[str], steps: int, batch: int) -> float:
    cfg = load_config("vits14_reddino", [*overrides, "data.synthetic=false",
                                         f"data.batch_size_per_gpu={batch}"])  # fmt: skip
    _decoded.cache_clear()
    stream = stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size, seed=0,
                                rank=0, world_size=1, start_step=0)  # fmt: skip
    tick = time.perf_counter()
    for step in range(steps):
        stream.batch(step)
    return steps * batch / (time.perf_counter() - tick)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--smears", type=int, default=20)
    parser.add_argument("--samples", type=int, default=3000, help="images read per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="augmented batches per timed run")
    args = parser.parse_args(argv)
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    smears = pick_smears(args.data, args.smears)
    with tempfile.TemporaryDirectory() as tmp:
        png_dir, shard_dir = Path(tmp) / "png", Path(tmp) / "shards"
        extract_patches(smears, png_dir, size=224)
        manifest = write_patch_shards(smears, shard_dir, size=224, shard_size=256)
        checked = same_pixels(png_dir, shard_dir)
        png_mb = sum(p.stat().st_size for p in png_dir.glob("*.png")) / 2**20
        shard_mb = sum(p.stat().st_size for p in shard_dir.iterdir()) / 2**20
        print(f"{len(smears)} smears of {args.data.name} -> {checked} patches of 224 px, "
              f"identical pixels in all {checked}; PNG folder {png_mb:.0f} MB, "
              f"{len(manifest['shards'])} shards {shard_mb:.0f} MB")
        folder, shards = [f"data.patch_dirs=[{png_dir}]"], [f"data.shards=[{shard_dir}]"]
        rates: dict[str, float] = {}
        for _ in range(args.repeats):  # interleaved: the machine is shared
            runs = {
                "images: folder": lambda: image_rate(folder, args.samples, cache=True),
                "images: folder, no cache": lambda: image_rate(folder, args.samples, cache=False),
                "images: shards": lambda: image_rate(shards, args.samples, cache=True),
                "augmented: folder": lambda: batch_rate(folder, args.steps, args.batch),
                "augmented: shards": lambda: batch_rate(shards, args.steps, args.batch),
            }
            for name, run in runs.items():
                rates[name] = max(rates.get(name, 0.0), run())
    print(f"one core (1 thread, num_workers=0), best of {args.repeats}; images = "
          f"{args.samples} reads from building the stream; augmented = {args.steps} batches "
          f"of {args.batch}")
    print(f"| {'stage':10} | {'baseline':24} | {'baseline img/s':>14} | {'shards img/s':>12} "
          f"| {'ratio':>6} |")
    print(f"|{'-' * 12}|{'-' * 26}|{'-' * 16}|{'-' * 14}|{'-' * 8}|")
    for stage, baseline in (("images", "folder"), ("images", "folder, no cache"),
                            ("augmented", "folder")):  # fmt: skip
        old, new = rates[f"{stage}: {baseline}"], rates[f"{stage}: shards"]
        print(f"| {stage:10} | {baseline:24} | {old:>14.1f} | {new:>12.1f} | {new / old:>5.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
