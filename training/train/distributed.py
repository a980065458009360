"""torchrun / srun environment -> process group, device, and the DDP / FSDP student wrapping.

``torchrun`` exports RANK / WORLD_SIZE / LOCAL_RANK; under ``srun`` (one task per GPU) the same
come from SLURM_PROCID / SLURM_STEP_NUM_TASKS / SLURM_LOCALID, with the step's first node as the
rendezvous. NCCL is used on CUDA and Gloo on CPU, so the same command trains on a laptop, a CPU
box with several processes, a GPU node or several.
"""

from __future__ import annotations

import datetime
import os
import re
import warnings
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return dist.is_available() and dist.is_initialized()


def _pick_device(local_rank: int, device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' requested but CUDA is not available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(device)


def _first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu[03-05,9],cpu1`` -> ``gpu03``."""
    match = re.match(r"([^,\[]+)(?:\[([^\]]+)\])?", nodelist.strip())
    if match is None:
        raise ValueError(f"cannot read the SLURM node list {nodelist!r}")
    prefix, ranges = match.groups()
    return prefix + (ranges.split(",")[0].split("-")[0] if ranges else "")


def slurm_environment(environ=os.environ) -> dict[str, str]:
    """torchrun's variables from an ``srun`` task's SLURM ones; {} outside an srun step.

    Only a step launched by srun counts (SLURM_STEP_NUM_TASKS): a batch script run by plain
    ``python`` is one process even when sbatch reserved several tasks, as RedDino's were.
    Variables already set (torchrun inside an allocation) win.
    """
    if "WORLD_SIZE" in environ or "SLURM_STEP_NUM_TASKS" not in environ:
        return {}
    nodelist = environ.get("SLURM_STEP_NODELIST") or environ["SLURM_JOB_NODELIST"]
    return {
        "RANK": environ["SLURM_PROCID"],
        "WORLD_SIZE": environ["SLURM_STEP_NUM_TASKS"],
        "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": environ.get("MASTER_ADDR") or _first_host(nodelist),
        "MASTER_PORT": environ.get("MASTER_PORT")
        or str(20000 + int(environ.get("SLURM_JOB_ID", "0")) % 20000),
    }


def init_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun (or srun) process group if there is one; a single process otherwise."""
    os.environ.update(slurm_environment())
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    torch_device = _pick_device(local_rank, device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if torch_device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend=backend,
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(minutes=30),
        )
    return DistEnv(rank, world_size, local_rank, torch_device)


def cleanup() -> None:
    """Leave the process group (torchrun expects a clean exit)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}


def fsdp_kwargs(run=None) -> dict:
    """``fully_shard`` options from ``run.fsdp_*``: mixed-precision policy and resharding."""
    if run is None:
        return {}
    from torch.distributed.fsdp import MixedPrecisionPolicy

    for key in ("fsdp_param_dtype", "fsdp_reduce_dtype"):
        if getattr(run, key) not in DTYPES:
            raise ValueError(f"run.{key} must be bf16, fp16, fp32 or null, got "
                             f"{getattr(run, key)!r}")  # fmt: skip
    policy = MixedPrecisionPolicy(param_dtype=DTYPES[run.fsdp_param_dtype],
                                  reduce_dtype=DTYPES[run.fsdp_reduce_dtype])  # fmt: skip
    return {"mp_policy": policy, "reshard_after_forward": run.fsdp_reshard_after_forward}


def wrap_student(module: nn.Module, env: DistEnv, strategy: str = "ddp", run=None) -> nn.Module:
    """The module to call in the training step: plain, DDP, or FSDP2 (``fully_shard``).

    DDP replicates the student and averages gradients; FSDP shards parameters, gradients and
    optimizer state block by block, which is what lets ViT-L/g fit per GPU.
    """
    if strategy not in ("ddp", "fsdp"):
        raise ValueError(f"run.strategy must be 'ddp' or 'fsdp', got {strategy!r}")
    if not env.distributed:
        return module
    if strategy == "ddp":
        device_ids = [env.local_rank] if env.device.type == "cuda" else None
        # Bit-exact resumes over 3+ ranks: DDP rebuilds its gradient buckets after a process's
        # first step, so a resumed process's first step would sum the ranks' gradients in another
        # order than the unbroken run did (two ranks' sum commutes). find_unused_parameters keeps
        # the buckets as built here, at the cost of one autograd-graph walk per step (and one
        # C++ warning per rank that no parameter was unused).
        return nn.parallel.DistributedDataParallel(
            module, device_ids=device_ids, find_unused_parameters=env.world_size > 2
        )
    from torch.distributed.fsdp import fully_shard

    warn_view_outputs_once(env)
    options = fsdp_kwargs(run)
    for block in module.backbone.blocks:
        fully_shard(block, **options)
    fully_shard(module, **options)
    return module


def warn_view_outputs_once(env: DistEnv) -> None:
    """FSDP2's "returned a view tensor" warning, said once by rank 0 instead of each step.

    The student's outputs are slices (CLS tokens, DINO/iBOT logits) never modified in place, so
    its hazard does not apply. A "once" filter is not enough: every ``catch_warnings`` block (the
    libraries run several per step) resets Python's memory of what was shown.
    """
    warnings.filterwarnings("ignore", category=UserWarning,
                            message=r"FSDP2-wrapped module .* returned a view tensor")  # fmt: skip
    if env.is_main:
        warnings.warn(
            "FSDP2-wrapped student returns view tensors (CLS / logit slices, never modified in "
            "place); FSDP2's per-step warning about them is silenced", UserWarning, stacklevel=2,
        )


def broadcast_flag(flag: bool, env: DistEnv) -> bool:
    """Rank 0's decision for every rank (wall-clock stops and checkpoints must agree)."""
    if not env.distributed:
        return flag
    value = torch.tensor([int(flag)], device=env.device if env.device.type == "cuda" else "cpu")
    dist.broadcast(value, src=0)
    return bool(value.item())


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True if ``flag`` is True on any rank (a NaN on one rank must skip the step on all)."""
    if not env.distributed:
        return flag
    value = torch.tensor([int(flag)], device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def broadcast_object(obj, env: DistEnv):
    """Rank 0's ``obj`` on every rank (e.g. the checkpoint to resume from)."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj, env: DistEnv) -> list:
    """Every rank's ``obj`` (e.g. RNG states), in rank order."""
    if not env.distributed:
        return [obj]
    gathered: list = [None] * env.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def shard_teacher(teacher: nn.Module, run=None) -> None:
    """Shard the teacher exactly like the FSDP student, so the EMA update pairs local shards."""
    from torch.distributed.fsdp import fully_shard

    options = fsdp_kwargs(run)
    for block in teacher.backbone.blocks:
        fully_shard(block, **options)
    fully_shard(teacher, **options)


def full_state(models: nn.Module, optimizer, *, sharded: bool) -> tuple[dict, dict]:
    """Unsharded model and optimizer state dicts (on rank 0's CPU when sharded)."""
    if not sharded:
        return models.state_dict(), optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return (
        get_model_state_dict(models, options=options),
        get_optimizer_state_dict(models.student, optimizer, options=options),
    )


def load_full_state(models: nn.Module, optimizer, state: dict, *, sharded: bool) -> None:
    """Inverse of :func:`full_state`: every rank reads the full checkpoint and keeps its shards."""
    if not sharded:
        models.load_state_dict(state["models"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    set_model_state_dict(models, state["models"], options=options)
    set_optimizer_state_dict(models.student, optimizer, state["optimizer"], options=options)


def save_sharded(folder, models: nn.Module, optimizer, meta: dict | None = None) -> None:
    """Every rank writes its own shards (torch.distributed.checkpoint): nothing is gathered.

    ``meta`` (step, config) goes in as JSON text: torch's ``format_utils dcp_to_torch`` file of
    the folder then still holds what export needs (rank 0's ``meta.pt`` is not converted).
    """
    import json

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    from training.train.checkpoint import DCP_META_KEY

    state = {"models": get_model_state_dict(models),
             "optimizer": get_optimizer_state_dict(models.student, optimizer)}  # fmt: skip
    if meta is not None:  # the same keys on every rank, as dcp.save requires
        state[DCP_META_KEY] = json.dumps(meta)
    dcp.save(state, checkpoint_id=str(folder))


def load_sharded(folder, models: nn.Module, optimizer) -> None:
    """Inverse of :func:`save_sharded` (any sharding, the same model and optimizer layout)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    state = {"models": get_model_state_dict(models),
             "optimizer": get_optimizer_state_dict(models.student, optimizer)}  # fmt: skip
    dcp.load(state, checkpoint_id=str(folder))
    set_model_state_dict(models, state["models"])
    set_optimizer_state_dict(models.student, optimizer, state["optimizer"])
