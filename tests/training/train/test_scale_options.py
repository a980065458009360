"""Options for large runs: fp16 + grad scaler, gradient accumulation, activation checkpointing,
FSDP mixed precision / resharding, each against its fp32 / one-pass / plain reference."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from training.configs import load_config
from training.data.loader import stream_from_config
from training.train.distributed import DistEnv
from training.train.loop import Trainer, make_grad_scaler
from training.train.step import train_step


def _trainer(tmp_path: Path, *extra: str) -> Trainer:
    cfg = load_config("tiny_cpu", [f"run.output_dir={tmp_path / 'run'}", "run.iters=10",
                                   "data.batch_size_per_gpu=4", *extra])  # fmt: skip
    return Trainer(cfg, DistEnv())


def _steps(trainer: Trainer, n: int) -> list[dict]:
    cfg = trainer.cfg
    stream = stream_from_config(cfg.data, cfg.mask, patch_size=14, seed=0, rank=0, world_size=1,
                                start_step=0)  # fmt: skip
    trainer.models.train()
    out = []
    for step in range(n):
        out.append(train_step(trainer.models, trainer.student, trainer.objective,
                              trainer.optimizer, stream.batch(step), trainer.schedules.at(step),
                              step=step, cfg=cfg, env=trainer.env,
                              scaler=trainer.scaler))  # fmt: skip
    return out


def _assert_close_runs(a: list[dict], b: list[dict], rel: float) -> None:
    for x, y in zip(a, b):
        for key in ("total_loss", "dino_loss", "ibot_loss", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=rel, abs=rel), key


def test_gradient_accumulation_equals_the_whole_batch(tmp_path):
    """Teacher targets on the whole batch, student in 2 halves: the same loss, grads and weights."""
    whole, split = _trainer(tmp_path / "a"), _trainer(tmp_path / "b", "optim.grad_accum_steps=2")
    _assert_close_runs(_steps(whole, 3), _steps(split, 3), rel=1e-5)
    for (name, a), b in zip(whole.models.state_dict().items(), split.models.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=name)
    with pytest.raises(ValueError, match="does not divide"):
        _steps(_trainer(tmp_path / "c", "optim.grad_accum_steps=3"), 1)


def test_activation_checkpointing_changes_nothing_but_memory(tmp_path):
    """Recomputed blocks replay their stochastic-depth draws: identical steps."""
    plain = _trainer(tmp_path / "a", "model.drop_path_rate=0.2")
    ckpt = _trainer(tmp_path / "b", "model.drop_path_rate=0.2",
                    "model.activation_checkpointing=true")  # fmt: skip
    assert ckpt.models.student.activation_checkpointing
    _assert_close_runs(_steps(plain, 2), _steps(ckpt, 2), rel=1e-6)


def test_fp16_with_grad_scaler_follows_fp32(tmp_path):
    fp32, fp16 = _trainer(tmp_path / "a"), _trainer(tmp_path / "b", "run.precision=fp16")
    assert fp32.scaler is None and fp16.scaler.get_scale() == 65536.0
    # this tiny model's first gradients (norm ~100) overflow fp16 at 65536; a real run's scaler
    # finds its scale by halving over the first steps (logged as overflow), here set directly
    fp16.scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    reference, half = _steps(fp32, 3), _steps(fp16, 3)
    assert [r["skipped"] for r in half] == [0, 0, 0]
    _assert_close_runs(reference, half, rel=2e-2)
    assert half[0]["loss_scale"] == 256.0
    fp16.save(2)  # the scaler's state travels with the checkpoint
    resumed = _trainer(tmp_path / "b", "run.precision=fp16")
    assert resumed.scaler.state_dict() == fp16.scaler.state_dict()


def test_fp16_overflow_skips_the_update_and_lowers_the_scale(tmp_path):
    trainer = _trainer(tmp_path, "run.precision=fp16")
    trainer.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # overflows fp16 grads
    before = copy.deepcopy(trainer.models.state_dict())
    terms = _steps(trainer, 1)[0]
    assert terms["skipped"] == 1 and terms["overflow"] == 1
    assert trainer.scaler.get_scale() == 2.0**99
    for name, value in trainer.models.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_precision_and_fsdp_options_are_checked(tmp_path):
    cfg = load_config("tiny_cpu", ["run.precision=fp8"])
    with pytest.raises(ValueError, match=r"run\.precision"):
        make_grad_scaler(cfg, DistEnv(), sharded=False)
    from training.train.distributed import fsdp_kwargs

    options = fsdp_kwargs(load_config("vitl14_reddino").run)
    assert options["mp_policy"].param_dtype == torch.float16
    assert options["reshard_after_forward"] is False
    with pytest.raises(ValueError, match="fsdp_param_dtype"):
        fsdp_kwargs(load_config("tiny_cpu", ["run.fsdp_param_dtype=int8"]).run)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="bf16/fp16 speed and memory need CUDA")
def test_fp16_and_checkpointing_on_cuda(tmp_path):
    cfg = load_config("tiny_cpu", [f"run.output_dir={tmp_path}", "run.precision=fp16",
                                   "model.activation_checkpointing=true",
                                   "run.iters=3"])  # fmt: skip
    trainer = Trainer(cfg, DistEnv(device=torch.device("cuda")))
    assert trainer.fit() == 2


def test_tensorboard_is_optional(tmp_path, capsys):
    trainer = _trainer(tmp_path, "run.tensorboard=true", "run.iters=2")
    trainer.fit()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert "pip install tensorboard" in capsys.readouterr().err
        assert not (tmp_path / "run" / "tb").exists()
    else:
        assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def test_per_module_clipping_clips_backbone_and_head_each(tmp_path):
    """DINOv2 / RedDino clip each student module to clip_grad; one global norm is the default."""
    from training.train.step import clip_gradients

    for per_module, expected in ((False, 0.01), (True, 0.01 * 2**0.5)):
        trainer = _trainer(tmp_path / str(per_module), "optim.clip_grad=0.01",
                           f"optim.clip_grad_per_module={str(per_module).lower()}")  # fmt: skip
        _steps(trainer, 1)  # the gradients of the step stay on the parameters
        student = trainer.models.student
        head = torch.linalg.vector_norm(torch.stack(
            [p.grad.norm() for p in student.dino_head.parameters() if p.grad is not None]))
        total = clip_gradients(student, float("inf"), per_module=False)
        assert float(total) == pytest.approx(expected, rel=1e-3), per_module
        if per_module:
            assert float(head) == pytest.approx(0.01, rel=1e-3)
