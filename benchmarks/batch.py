"""Batch throughput: smears per minute with 1 vs N dask workers (``python benchmarks/batch.py``).

The baseline is one single-threaded worker; the table prints how much more smears per minute
each larger LocalCluster gets through the same pipeline (segment + patch grid + cell vectors).
Worker start-up and model loading are warmed up first and not timed: they are paid once per
cluster, the per-smear work is what scales.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from napari_reddino.cli.demo import write_demo_smears
from napari_reddino.runs.distributed import run_batch, start_client
from napari_reddino.runs.pipeline import PipelineConfig, cached_backbone, read_subject_map


def time_batch(files, subjects, config: PipelineConfig, workers: int, out: Path) -> dict:
    """Seconds for one batch on a fresh ``workers``-process LocalCluster (warm models)."""
    client = start_client(workers, threads_per_worker=1)
    try:
        start = time.perf_counter()
        client.run(cached_backbone, config.backbone, config.device)  # warm every worker
        warm = time.perf_counter() - start
        start = time.perf_counter()
        batch = run_batch(files, out, config, subjects=subjects, client=client)
        seconds = time.perf_counter() - start
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    if batch.count("done") != len(files):
        raise RuntimeError(f"{workers} workers: not every smear finished:\n{batch.runs}")
    cells = int(batch.runs["n_cells"].sum())
    return {"workers": workers, "seconds": seconds, "warmup": warm, "cells": cells,
            "per_minute": 60 * len(files) / seconds}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smears", type=int, default=8, help="smears per batch (default 8)")
    parser.add_argument("--size", type=int, default=512, help="smear side in pixels (512)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to compare; the first is the baseline (1 2)")
    parser.add_argument("--backbone", default=None, help="backbone (default: the bundled one)")
    args = parser.parse_args(argv)
    from napari_reddino.embed.backbones import DEFAULT_BACKBONE

    config = PipelineConfig(backbone=args.backbone or DEFAULT_BACKBONE)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        per_subject = max(1, args.smears // 2)
        files, mapping = write_demo_smears(root / "in", n_subjects=2,
                                           images_per_subject=per_subject,
                                           shape=(args.size, args.size), seed=0)
        subjects = read_subject_map(mapping, files)
        rows = [time_batch(files, subjects, config, w, root / f"out{w}") for w in args.workers]
    base = rows[0]["per_minute"]
    print(f"\n{len(files)} smears of {args.size}x{args.size} px, backbone {config.backbone}, "
          f"{rows[0]['cells']} cells per batch\n")
    print("| workers | batch s | smears/min | speed-up vs 1st | worker warm-up s |")
    print("|---:|---:|---:|---:|---:|")
    for row in rows:
        print(f"| {row['workers']} | {row['seconds']:.1f} | {row['per_minute']:.1f} | "
              f"{row['per_minute'] / base:.2f}x | {row['warmup']:.1f} |")


if __name__ == "__main__":
    main()
