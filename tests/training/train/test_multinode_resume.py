"""Two simulated nodes x two processes on the CPU, SIGTERM to both launchers mid-run, resume:
the resumed steps and the final weights equal those of an uninterrupted run bit for bit.

Each node is its own ``torchrun`` agent (``--nnodes=2 --nproc-per-node=2``) meeting the other
through c10d rendezvous on 127.0.0.1, as two SLURM/Kubernetes nodes would; the agents pass the
SIGTERM on to their workers, whose handler (``training.train.preemption``) finishes the step
on every rank, writes the checkpoint and exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.train.checkpoint import list_checkpoints, load_checkpoint
from training.train.logging import read_log

REPO = Path(__file__).resolve().parents[3]
ITERS = 40  # the schedules' length in every run below; none gets that far
STOP = 12  # the runs that are not signalled stop after this many steps
COMPARED = ("total_loss", "dino_loss", "ibot_loss", "koleo_loss", "grad_norm", "lr")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_two_nodes(out: Path, *extra: str) -> list[subprocess.Popen]:
    """One torchrun agent per simulated node; they meet at a c10d rendezvous on localhost."""
    port, env = _free_port(), {**os.environ, "OMP_NUM_THREADS": "1"}
    agents = []
    for node in (0, 1):
        command = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                   "--nproc-per-node=2", f"--node-rank={node}", "--rdzv-backend=c10d",
                   f"--rdzv-endpoint=127.0.0.1:{port}", f"--rdzv-id=multinode-{port}",
                   "--max-restarts=0", "-m", "training", "train", "--config", "tiny_cpu",
                   f"run.output_dir={out}", f"run.iters={ITERS}", "data.batch_size_per_gpu=2",
                   "model.drop_path_rate=0.1", "loss.koleo_weight=0.1",
                   "run.checkpoint_every=1000", *extra]  # fmt: skip
        log = open(out.parent / f"{out.name}-node{node}.log", "w")  # noqa: SIM115 - closed below
        agents.append(subprocess.Popen(command, cwd=REPO, env=env, stdout=log,
                                       stderr=subprocess.STDOUT))  # fmt: skip
        agents[-1].log = log
    return agents


def _wait(agents: list[subprocess.Popen], timeout: float = 150) -> list[int]:
    codes = [agent.wait(timeout=timeout) for agent in agents]
    for agent in agents:
        agent.log.close()
    return codes


def _node_logs(out: Path, tail: int | None = 1500) -> str:
    logs = [(out.parent / f"{out.name}-node{n}.log").read_text() for n in (0, 1)]
    return "".join(log[-tail:] if tail else log for log in logs)


def _steps(out: Path, after_resume: bool = False) -> dict[int, dict]:
    records = read_log(out / "log.jsonl")
    resumes = [i for i, r in enumerate(records) if r.get("event") == "resume"]
    tail = records[resumes[-1] + 1 :] if after_resume and resumes else records
    return {r["step"]: r for r in tail if "total_loss" in r}


@pytest.mark.slow
def test_two_nodes_stopped_by_sigterm_resume_bit_exact(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    agents = _launch_two_nodes(broken)
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline and all(a.poll() is None for a in agents):
        if len(_steps(broken)) >= 3:  # the job is training: the scheduler preempts it now
            break
        time.sleep(0.05)
    assert all(a.poll() is None for a in agents), _node_logs(broken)
    for agent in agents:
        agent.send_signal(signal.SIGTERM)
    _wait(agents)
    records = read_log(broken / "log.jsonl")
    [end] = [r for r in records if r.get("event") == "end"]
    assert end["signal"] == "SIGTERM", _node_logs(broken)
    stopped_at = end["step"]
    assert list_checkpoints(broken)[-1][0] == stopped_at < STOP - 2, _node_logs(broken)
    # every worker finished its step, joined the checkpoint and returned normally (torchrun's
    # agents themselves end with SignalException, as torchrun does on any SIGTERM)
    logs = _node_logs(broken, tail=None)
    assert logs.count(f"finished at step {stopped_at};") == 4, logs[-3000:]

    agents = _launch_two_nodes(broken, f"run.stop_after={STOP}")
    assert _wait(agents) == [0, 0], _node_logs(broken)
    unbroken = tmp_path / "unbroken"
    unbroken.mkdir()
    agents = _launch_two_nodes(unbroken, f"run.stop_after={STOP}")
    assert _wait(agents) == [0, 0], _node_logs(unbroken)

    resumed, reference = _steps(broken, after_resume=True), _steps(unbroken)
    assert sorted(resumed) == list(range(stopped_at + 1, STOP))
    for step, record in resumed.items():
        for key in COMPARED:
            assert record[key] == reference[step][key], (step, key)
    state = load_checkpoint(list_checkpoints(broken)[-1][1])
    expected = load_checkpoint(list_checkpoints(unbroken)[-1][1])
    assert state["step"] == expected["step"] == STOP - 1
    for part in ("models", "objective"):
        for name, value in expected[part].items():
            assert torch.equal(state[part][name], value), (part, name)
    for a, b in zip(state["rng"], expected["rng"]):  # every rank's generators, too
        assert torch.equal(a["torch"], b["torch"])
