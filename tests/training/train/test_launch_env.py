"""srun tasks join the process group like torchrun's; FSDP2's view warning prints once."""

from __future__ import annotations

import warnings

import torch

from training.train.distributed import DistEnv, slurm_environment, warn_view_outputs_once

SRUN_TASK = {
    "SLURM_JOB_ID": "4242", "SLURM_PROCID": "5", "SLURM_LOCALID": "1",
    "SLURM_STEP_NUM_TASKS": "8", "SLURM_NTASKS": "8",
    "SLURM_STEP_NODELIST": "gpu[07-08,11],cpu1", "SLURM_JOB_NODELIST": "gpu[07-08,11],cpu1",
}  # fmt: skip


def test_an_srun_task_gets_torchrun_variables():
    env = slurm_environment(SRUN_TASK)
    assert env["RANK"] == "5" and env["WORLD_SIZE"] == "8" and env["LOCAL_RANK"] == "1"
    assert env["MASTER_ADDR"] == "gpu07"
    assert env["MASTER_PORT"] == str(20000 + 4242)
    assert slurm_environment({**SRUN_TASK, "MASTER_PORT": "29400"})["MASTER_PORT"] == "29400"
    single = {**SRUN_TASK, "SLURM_STEP_NODELIST": "node3"}
    assert slurm_environment(single)["MASTER_ADDR"] == "node3"


def test_a_batch_script_or_torchrun_is_left_alone():
    batch_script = {k: v for k, v in SRUN_TASK.items() if not k.startswith("SLURM_STEP")}
    assert slurm_environment(batch_script) == {}  # sbatch --ntasks=5 + plain python: 1 process
    assert slurm_environment({**SRUN_TASK, "WORLD_SIZE": "16"}) == {}  # torchrun in srun


def test_fsdp_view_warning_is_shown_once_on_rank_zero():
    message = "FSDP2-wrapped module (ViewTestBlock) returned a view tensor. An in-place op..."
    for rank, expected in ((0, 1), (1, 0)):
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("default")
            warn_view_outputs_once(DistEnv(rank=rank, world_size=2, device=torch.device("cpu")))
            for _ in range(20):  # 20 steps, each with what resets Python's once-per-place memory
                with warnings.catch_warnings():
                    pass
                warnings.warn(message, UserWarning, stacklevel=1)
        assert len([w for w in seen if "view tensor" in str(w.message)]) == expected
