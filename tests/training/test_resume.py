"""kill -9 in the middle of a run, resume, and get the very same next losses as an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from training.config import load_config
from training.distributed import DistEnv
from training.logging import read_log
from training.train import Trainer

REPO = Path(__file__).resolve().parents[2]
ITERS = 60  # the schedules span 60 steps in every run below


def _overrides(out: Path, *extra: str) -> list[str]:
    return [f"run.output_dir={out}", f"run.iters={ITERS}", "data.batch_size_per_gpu=4", *extra]


def _losses_after_last_resume(out: Path) -> dict[int, dict]:
    records = read_log(out / "log.jsonl")
    resumes = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    tail = records[resumes[-1] + 1 :] if resumes else records
    return {r["step"]: r for r in tail if "total_loss" in r}


@pytest.mark.slow
def test_kill_9_then_resume_reproduces_the_next_steps_exactly(tmp_path):
    killed = tmp_path / "killed"
    command = [sys.executable, "-m", "training", "train", "--config", "tiny_cpu",
               *_overrides(killed, "run.checkpoint_every=3")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.monotonic() + 120
    while not list_checkpoints(killed) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]
    records = read_log(killed / "log.jsonl")
    assert not any(r.get("event") == "end" for r in records), "the run ended before the kill"
    step_at_kill = list_checkpoints(killed)[-1][0]
    assert step_at_kill < ITERS - 3

    resumed_cfg = load_config("tiny_cpu", _overrides(killed, f"run.stop_after={step_at_kill + 3}"))
    Trainer(resumed_cfg, DistEnv()).fit()
    resumed = _losses_after_last_resume(killed)
    assert min(resumed) == step_at_kill + 1

    unbroken = tmp_path / "unbroken"
    Trainer(load_config("tiny_cpu", _overrides(unbroken, f"run.stop_after={step_at_kill + 3}")),
            DistEnv()).fit()  # fmt: skip
    reference = _losses_after_last_resume(unbroken)
    for step in (step_at_kill + 1, step_at_kill + 2):
        for key in ("total_loss", "dino_loss", "ibot_loss", "lr", "momentum", "teacher_temp"):
            assert resumed[step][key] == reference[step][key], (step, key)


def test_checkpoint_write_is_atomic_and_pruned(tmp_path):
    for step in range(4):
        save_checkpoint(tmp_path, step, {"models": {}, "value": step}, keep=2)
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    # a crash mid-write leaves only a hidden temp file, never a half checkpoint that resumes
    (tmp_path / ".checkpoint_0000009.pt.tmp-1").write_bytes(b"partial")
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 3]
    assert load_checkpoint(list_checkpoints(tmp_path)[-1][1])["value"] == 3


def test_unreadable_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "checkpoint_0000001.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_checkpoint(bad)
