"""benchmarks/gpu_suite.sh: says clearly when there is no GPU; ``--smoke`` runs its code for real
(2 Gloo processes, tiny) and prints every row; its FLOP count (heads included) is torch's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.gpu_suite import COLUMNS, NOT_PRESENT, TINY, _batch, step_flops
from training.configs import load_config
from training.train.distributed import DistEnv
from training.train.loop import Trainer
from training.train.step import train_step

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this checks the message without CUDA")
def test_gpu_suite_without_cuda_says_so_and_fails():
    env = {**os.environ, "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_suite.sh")], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2
    assert "no CUDA device" in done.stderr
    assert "measurement" not in done.stdout  # no table pretending to be a measurement


@pytest.mark.slow
def test_gpu_suite_smoke_runs_every_row_over_two_processes():
    env = {k: v for k, v in os.environ.items() if k != "DINOV2_SRC"}
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")
    done = subprocess.run(["bash", "benchmarks/gpu_suite.sh", "--smoke"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("device: 2 x cpu over gloo")
    assert lines[1] == COLUMNS
    rows = [line for line in lines[2:] if not line.startswith(" ")]
    labels = [line[:44].strip() for line in rows]
    assert labels == ["train ViT-S/14 ddp x2 b4 bf16", "train ViT-S/14 fsdp x2 b4 bf16",
                      "train ViT-B/14 ddp x2 b4 bf16", "train ViT-B/14 fsdp x2 b4 bf16",
                      "embedding ViT-S/14 (plugin, 1 GPU)", NOT_PRESENT[:44].strip(),
                      "loss curve ViT-S/14 ddp x2 6 steps"]  # fmt: skip
    assert rows[5] == NOT_PRESENT
    for line in rows[:4]:  # rate, step ms, TFLOP/s and peak memory were all measured
        rate, unit, step_ms, tflops, mfu, peak_mb = line[44:].split()
        assert float(rate) > 0 and unit == "img/s" and float(step_ms) > 0 and mfu == "-"
        assert float(tflops) >= 0 and float(peak_mb) > 0
    assert float(rows[4][44:].split()[0]) > 0
    curve = lines[-1]
    assert curve.startswith("  total loss by step: 0:")
    assert [int(p.split(":")[0]) for p in curve.split(": ", 1)[1].split()] == [0, 2, 4, 5]


@pytest.mark.parametrize("extra", [[], ["data.local_crops_number=2", "data.local_crop_size=28",
                                        "head.ibot_separate_head=true"]])  # fmt: skip
def test_step_flops_count_the_heads_as_torch_counts_them(tmp_path, extra):
    """The analytic count (backbone, DINO head, iBOT head on the masked patches) equals torch's
    FlopCounterMode over one real training step (eager attention: its matmuls are counted)."""
    cfg = load_config("vits14_reddino", [*TINY, "run.precision=fp32", "model.attn=eager",
                                         f"run.output_dir={tmp_path}", "model.init_from=null",
                                         *extra])  # fmt: skip
    trainer = Trainer(cfg, DistEnv())
    batch = _batch(cfg, rank=0)
    assert 0 < batch["masks"].sum() < batch["masks"].numel()
    with FlopCounterMode(display=False) as counter:
        train_step(trainer.models, trainer.student, trainer.objective, trainer.optimizer, batch,
                   trainer.schedules.at(5), step=0, cfg=cfg, env=trainer.env,
                   scaler=trainer.scaler)  # fmt: skip
    counted = step_flops(cfg, trainer.models, batch)
    assert counted == pytest.approx(counter.get_total_flops(), rel=0.01)
    student = trainer.models.student
    ibot = sum(m.in_features * m.out_features for m in (student.ibot_head or student.dino_head)
               .modules() if isinstance(m, torch.nn.Linear))  # fmt: skip
    heads = 2 * int(batch["masks"].sum()) * ibot * 4  # student fwd + bwd, teacher fwd
    assert heads > 0.01 * counted  # without the iBOT head the count would miss the 1 % above
