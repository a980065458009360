"""Checkpoints are data, not code (#23 B8): a crafted pickle given to `export` or found on
resume must be refused without running; export to an existing file and a resume with another
run.iters get clear messages."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.__main__ import main
from training.configs import ConfigError, load_config
from training.train.checkpoint import load_checkpoint, newest_readable, rng_state, save_checkpoint
from training.train.distributed import DistEnv
from training.train.loop import Trainer


class _Payload:
    """Unpickling this writes a file: what an attacker's checkpoint would do."""

    def __init__(self, target: Path):
        self.target = str(target)

    def __reduce__(self):
        return (exec, (f"open({self.target!r}, 'w').write('ran')",))


def _crafted(path: Path, target: Path) -> Path:
    torch.save({"step": 3, "models": {"w": torch.zeros(2)}, "x": _Payload(target)}, path)
    return path


def test_a_crafted_checkpoint_is_refused_and_never_runs(tmp_path):
    target = tmp_path / "pwned.txt"
    path = _crafted(tmp_path / "checkpoint_0000003.pt", target)
    with pytest.raises(ValueError, match=r"was refused.*asks for exec.*not loaded"):
        load_checkpoint(path)
    assert not target.exists()
    # resume falls back past it (there is nothing older here) without running it either
    messages = []
    assert newest_readable(tmp_path, warn=messages.append) is None
    assert messages and "refused" in messages[0] and not target.exists()


def test_export_of_a_crafted_checkpoint_runs_nothing(tmp_path, capsys):
    target = tmp_path / "pwned.txt"
    path = _crafted(tmp_path / "evil.pt", target)
    assert main(["export", str(path), "--out", str(tmp_path / "model")]) == 2
    assert "refused" in capsys.readouterr().err
    assert not target.exists() and not (tmp_path / "model").exists()


def test_a_real_checkpoint_still_loads_with_numpy_rng_state(tmp_path):
    state = {"models": {"w": torch.arange(4.0)}, "rng": [rng_state()], "config": {"a": 1},
             "schedules": {"lr": {"values": [0.1, 0.2]}}}
    path = save_checkpoint(tmp_path, 5, state)
    loaded = load_checkpoint(path)
    assert loaded["step"] == 5 and torch.equal(loaded["models"]["w"], torch.arange(4.0))
    assert loaded["rng"][0]["numpy"][0] == "MT19937"


def test_export_to_an_existing_file_says_so(tmp_path, capsys):
    existing = tmp_path / "model.bin"
    existing.write_text("keep me")
    state = {"models": {}, "rng": [rng_state()]}
    save_checkpoint(tmp_path / "run", 1, state)
    assert main(["export", str(tmp_path / "run"), "--out", str(existing)]) == 2
    err = capsys.readouterr().err
    assert "is an existing file" in err and "Traceback" not in err
    assert existing.read_text() == "keep me"


def test_resume_with_another_run_iters_message_agrees(tmp_path):
    def tiny(*extra):
        return load_config("tiny_cpu", [f"run.output_dir={tmp_path}", "run.iters=6",
                                        "data.batch_size_per_gpu=2", *extra])  # fmt: skip

    Trainer(tiny("run.stop_after=1"), DistEnv()).fit()
    with pytest.raises(ConfigError) as info:
        Trainer(tiny("run.iters=12"), DistEnv())
    message = str(info.value)
    assert "run.iters: 6 -> 12" in message
    assert "run length" not in message  # it said "run length may change" and refused it
    assert "run.stop_after" in message
