"""kill -9 in the middle of a run, resume, and get the very same next losses as an unbroken run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.configs import ConfigError, load_config
from training.train.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from training.train.distributed import DistEnv
from training.train.logging import read_log
from training.train.loop import Trainer

REPO = Path(__file__).resolve().parents[3]
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


STOCHASTIC = ("model.drop_path_rate=0.1", "loss.koleo_weight=0.1", "data.local_crops_number=2",
              "data.local_crop_size=28", "run.iters=8", "run.checkpoint_every=100")  # fmt: skip


def _torchrun(out: Path, *extra: str) -> None:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training", "train", "--config", "tiny_cpu", f"run.output_dir={out}",
               "data.batch_size_per_gpu=2", *STOCHASTIC, *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.mark.slow
def test_resume_is_bit_exact_with_drop_path_koleo_and_local_crops_over_two_ranks(tmp_path):
    """Stochastic depth draws from each rank's global RNG: the resume must restore it exactly."""
    _torchrun(tmp_path / "unbroken", "run.stop_after=5")
    _torchrun(tmp_path / "broken", "run.stop_after=2")
    _torchrun(tmp_path / "broken", "run.stop_after=5")
    resumed = _losses_after_last_resume(tmp_path / "broken")
    reference = _losses_after_last_resume(tmp_path / "unbroken")
    assert sorted(resumed) == [2, 3, 4] and all(r["koleo_loss"] > -1e9 for r in resumed.values())
    for step, record in resumed.items():
        for key in ("total_loss", "dino_loss", "ibot_loss", "koleo_loss", "grad_norm"):
            assert record[key] == reference[step][key], (step, key)
    state = load_checkpoint(list_checkpoints(tmp_path / "broken")[-1][1])["models"]
    expected = load_checkpoint(list_checkpoints(tmp_path / "unbroken")[-1][1])["models"]
    assert all(torch.equal(state[name], value) for name, value in expected.items())


def _tiny(out: Path, *extra: str):
    return load_config("tiny_cpu", [f"run.output_dir={out}", "run.iters=6",
                                    "data.batch_size_per_gpu=2", *extra])  # fmt: skip


def test_truncated_newest_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    Trainer(_tiny(tmp_path, "run.stop_after=3", "run.checkpoint_every=1",
                  "run.keep_checkpoints=3"), DistEnv()).fit()  # fmt: skip
    (step_a, _), (step_b, newest) = list_checkpoints(tmp_path)[-2:]
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, e.g. a full disk
    trainer = Trainer(_tiny(tmp_path, "run.stop_after=3", "run.checkpoint_every=1",
                            "run.keep_checkpoints=3"), DistEnv())  # fmt: skip
    assert trainer.start_step == step_a + 1 == step_b
    assert "resuming from the previous checkpoint" in capsys.readouterr().err
    events = [r for r in read_log(tmp_path / "log.jsonl") if r.get("event") == "warning"]
    assert newest.name in events[-1]["message"]


def test_resume_refuses_settings_it_would_ignore(tmp_path):
    Trainer(_tiny(tmp_path, "run.stop_after=1"), DistEnv()).fit()
    with pytest.raises(ConfigError, match=r"optim\.base_lr: 0\.001 -> 0\.002"):
        Trainer(_tiny(tmp_path, "optim.base_lr=2e-3"), DistEnv())
    # run length, logging and checkpointing may change on a resume
    trainer = Trainer(_tiny(tmp_path, "run.stop_after=2", "run.log_every=2"), DistEnv())
    assert trainer.start_step == 1


def test_sharded_dcp_checkpoint_resumes_exactly(tmp_path):
    """run.checkpoint_format=sharded: a folder of per-rank shards (DCP) + rank 0's metadata."""
    extra = ("run.checkpoint_format=sharded", "model.drop_path_rate=0.1", "run.keep_checkpoints=1")
    Trainer(_tiny(tmp_path / "broken", "run.stop_after=2", *extra), DistEnv()).fit()
    [(step, folder)] = list_checkpoints(tmp_path / "broken")
    assert (step, folder.suffix) == (1, ".dcp") and (folder / "meta.pt").is_file()
    Trainer(_tiny(tmp_path / "broken", "run.stop_after=4", *extra), DistEnv()).fit()
    Trainer(_tiny(tmp_path / "unbroken", "run.stop_after=4", *extra), DistEnv()).fit()
    resumed = _losses_after_last_resume(tmp_path / "broken")
    reference = _losses_after_last_resume(tmp_path / "unbroken")
    assert sorted(resumed) == [2, 3]
    for step, record in resumed.items():
        assert record["total_loss"] == reference[step]["total_loss"], step
    assert [s for s, _ in list_checkpoints(tmp_path / "broken")] == [3]  # pruned, keep=1
