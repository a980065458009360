"""SIGTERM mid-run: the step finishes, a checkpoint is written, and the resumed run is bit-exact."""

from __future__ import annotations

import os
import signal

import torch

from training.configs import load_config
from training.train import loop
from training.train.checkpoint import latest_checkpoint, load_checkpoint
from training.train.distributed import DistEnv
from training.train.logging import read_log
from training.train.loop import Trainer
from training.train.preemption import StopSignal


def _cfg(out):
    overrides = ["run.iters=6", "data.batch_size_per_gpu=2", "run.checkpoint_every=100"]
    return load_config("tiny_cpu", [f"run.output_dir={out}", *overrides])


def test_stop_signal_is_recorded_and_the_handler_restored():
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_checkpoints_and_the_run_resumes_bit_exact(tmp_path, monkeypatch):
    Trainer(_cfg(tmp_path / "unbroken"), DistEnv()).fit()

    step_function = loop.train_step

    def step_then_sigterm(*args, step, **kw):
        terms = step_function(*args, step=step, **kw)
        if step == 2:  # the scheduler's SIGTERM arrives during step 2
            os.kill(os.getpid(), signal.SIGTERM)
        return terms

    monkeypatch.setattr(loop, "train_step", step_then_sigterm)
    assert Trainer(_cfg(tmp_path / "broken"), DistEnv()).fit() == 2
    ends = [r for r in read_log(tmp_path / "broken" / "log.jsonl") if r.get("event") == "end"]
    assert ends[-1]["signal"] == "SIGTERM" and ends[-1]["step"] == 2
    assert load_checkpoint(latest_checkpoint(tmp_path / "broken"))["step"] == 2
    monkeypatch.setattr(loop, "train_step", step_function)
    assert Trainer(_cfg(tmp_path / "broken"), DistEnv()).fit() == 5

    broken = load_checkpoint(latest_checkpoint(tmp_path / "broken"))
    unbroken = load_checkpoint(latest_checkpoint(tmp_path / "unbroken"))
    assert broken["step"] == unbroken["step"] == 5
    for name, value in unbroken["models"].items():
        assert torch.equal(broken["models"][name], value), name


def test_a_second_sigterm_during_the_final_checkpoint_does_not_kill_the_run(tmp_path, monkeypatch):
    """torchrun signals its workers one by one: a rank can get its SIGTERM while another rank's
    signal has already stopped all and the last checkpoint is being written (seen in CI with 2
    nodes x 2 processes: the late rank died and took the checkpoint with it)."""
    step_function, save = loop.train_step, Trainer.save

    def step_then_sigterm(*args, step, **kw):
        terms = step_function(*args, step=step, **kw)
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return terms

    def save_with_a_late_sigterm(self, step):
        os.kill(os.getpid(), signal.SIGTERM)  # the default action would end the process here
        save(self, step)

    monkeypatch.setattr(loop, "train_step", step_then_sigterm)
    monkeypatch.setattr(Trainer, "save", save_with_a_late_sigterm)
    assert Trainer(_cfg(tmp_path), DistEnv()).fit() == 1
    ends = [r for r in read_log(tmp_path / "log.jsonl") if r.get("event") == "end"]
    assert ends[-1]["signal"] == "SIGTERM" and ends[-1]["step"] == 1
    assert load_checkpoint(latest_checkpoint(tmp_path))["step"] == 1
