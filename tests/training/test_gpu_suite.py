"""benchmarks/gpu_suite.sh: says clearly when there is no GPU; its code runs (tiny, on CPU)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
def test_gpu_suite_rows_run_tiny_on_cpu():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--smoke"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout[done.stdout.index("\nmeasurement ") + 1 :].splitlines()
    labels = [line[:34].strip() for line in table[1:] if not line.startswith(" ")]
    assert labels == ["embedding ViT-S/14 bf16", "train step ViT-S/14 b64 bf16",
                      "train step ViT-S/14 b64 fp16", "train step ViT-B/14 b64 bf16",
                      "train step ViT-B/14 b64 fp16", "loss curve ViT-S/14 300 steps"]  # fmt: skip
    assert "total loss by step: 0:" in done.stdout
