"""The training loop as a user runs it: tiny CPU config, loss falls, every term logged, guards."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from training.configs import ConfigError, load_config
from training.models.student_teacher import StudentTeacher
from training.train.distributed import DistEnv
from training.train.logging import read_log
from training.train.loop import Trainer, build_schedules
from training.train.step import StepValues, train_step

REPO = Path(__file__).resolve().parents[3]


def tiny(tmp_path: Path, *overrides: str):
    return load_config("tiny_cpu", [f"run.output_dir={tmp_path / 'run'}", *overrides])


def test_tiny_cpu_run_loss_falls_and_logs_every_term(tmp_path):
    cfg = tiny(tmp_path, "run.iters=15")
    last = Trainer(cfg, DistEnv()).fit()
    assert last == 14
    steps = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "total_loss" in r]
    assert [r["step"] for r in steps] == list(range(15))
    for key in (
        "dino_loss",
        "ibot_loss",
        "lr",
        "weight_decay",
        "momentum",
        "teacher_temp",
        "img_per_s",
        "grad_norm",
        "peak_mem_mb",
    ):
        assert key in steps[0], key
    first = steps[0]["total_loss"]
    late = sum(r["total_loss"] for r in steps[-3:]) / 3
    assert late < first - 0.5, (first, late)
    # schedules as configured: teacher temperature warms up 0.04 -> 0.07, wd rises 0.04 -> 0.2
    assert steps[0]["teacher_temp"] == pytest.approx(0.04)
    assert steps[-1]["teacher_temp"] == pytest.approx(0.07)
    assert steps[0]["weight_decay"] == pytest.approx(0.04)
    assert steps[-1]["weight_decay"] == pytest.approx(0.2)
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert list((tmp_path / "run").glob("checkpoint_*.pt"))


def test_masked_patches_are_invisible_to_the_student(tmp_path):
    cfg = tiny(tmp_path)
    models = StudentTeacher(cfg.model, cfg.head, cfg.data.global_crop_size).eval()
    images = torch.randn(2, 3, 56, 56)
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, 5] = True  # token 5 = patch row 1, col 1 of the 4x4 grid
    changed = images.clone()
    changed[:, :, 14:28, 14:28] += 5.0  # only the pixels of the masked patch
    with torch.no_grad():
        a = models.student.tokens(images, masks)
        b = models.student.tokens(changed, masks)
        seen = models.student.tokens(changed)
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, seen)


def test_teacher_is_the_ema_of_the_student(tmp_path):
    cfg = tiny(tmp_path)
    models = StudentTeacher(cfg.model, cfg.head, cfg.data.global_crop_size)
    with torch.no_grad():
        for p in models.student.parameters():
            p.add_(torch.randn_like(p))
    before = copy.deepcopy(models.teacher.state_dict())
    models.update_teacher(0.9)
    student = models.student.state_dict()
    for name, value in models.teacher.state_dict().items():
        torch.testing.assert_close(value, 0.9 * before[name] + 0.1 * student[name])
    assert not any(p.requires_grad for p in models.teacher.parameters())


def test_non_finite_batch_skips_the_update(tmp_path):
    cfg = tiny(tmp_path)
    trainer = Trainer(cfg, DistEnv())
    stream_batch = {
        "global_crops": torch.full((16, 3, 56, 56), float("nan")),
        "local_crops": torch.empty(0, 3, 98, 98),
        "masks": torch.zeros(16, 16, dtype=torch.bool),
    }
    before = copy.deepcopy(trainer.models.state_dict())
    values = StepValues(
        lr=1e-3, weight_decay=0.04, momentum=0.99, teacher_temp=0.04, last_layer_lr=1e-3
    )
    terms = train_step(
        trainer.models,
        trainer.student,
        trainer.objective,
        trainer.optimizer,
        stream_batch,
        values,
        step=0,
        cfg=cfg,
        env=DistEnv(),
    )
    assert terms["skipped"] == 1
    for name, value in trainer.models.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_nan_abort_after_n_bad_steps(tmp_path):
    cfg = tiny(tmp_path, "optim.base_lr=.inf", "run.nan_abort_after=2")
    with pytest.raises(FloatingPointError, match="consecutive non-finite"):
        Trainer(cfg, DistEnv()).fit()


def test_lr_follows_sqrt_rule_and_freezes_last_layer(tmp_path):
    cfg = tiny(
        tmp_path,
        "optim.lr_scaling=sqrt",
        "optim.base_lr=2e-4",
        "optim.warmup_iters=0",
        "optim.reference_batch=1024",
        "optim.freeze_last_layer_iters=3",
    )
    schedules = build_schedules(cfg, global_batch=256)
    assert schedules.at(0).lr == pytest.approx(2e-4 * 0.5)
    assert schedules.at(2).last_layer_lr == 0.0
    assert schedules.at(3).last_layer_lr == schedules.at(3).lr


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        tiny(tmp_path, "optim.learning_rate=1")
    with pytest.raises(ConfigError, match="bundled configs"):
        load_config("no_such_config")
    run = subprocess.run(
        [sys.executable, "-m", "training", "train", "--config", "tiny_cpu", "optim.lr"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "section.key=value" in run.stderr
    assert "Traceback" not in run.stderr


# RedDino's deployment/2_gpu/{s,b,l}.yaml: batch per GPU and OFFICIAL_EPOCH_LENGTH (10 epochs)
REDDINO_RUNS = {"vits14_reddino": (280, 1950), "vitb14_reddino": (196, 3650),
                "vitl14_reddino": (64, 10900)}


@pytest.mark.parametrize("name", sorted(REDDINO_RUNS))
def test_bundled_configs_mirror_reddino(name):
    """The values RedDino's configs and code effectively trained with (see the YAML comments)."""
    from training.data.loader import stream_from_config

    batch, epoch = REDDINO_RUNS[name]
    cfg = load_config(name)
    assert cfg.data.batch_size_per_gpu == batch
    assert (cfg.run.iters, cfg.optim.warmup_iters) == (10 * epoch, epoch // 10)
    assert cfg.teacher.temp_warmup_iters == 30 * epoch
    assert (cfg.optim.layerwise_decay, cfg.optim.freeze_last_layer_iters) == (1.0, 0)
    assert cfg.optim.clip_grad_per_module  # backbone and head clipped to 3.0 each
    assert cfg.model.drop_path_rate == 0.0
    assert (cfg.optim.base_lr, cfg.optim.lr_scaling, cfg.optim.reference_batch) == (
        2e-4, "sqrt", 1024)  # fmt: skip
    assert (cfg.optim.weight_decay, cfg.optim.weight_decay_end, cfg.optim.clip_grad) == (
        0.04, 0.2, 3.0)  # fmt: skip
    assert (cfg.teacher.momentum_start, cfg.teacher.momentum_end) == (0.994, 1.0)
    assert (cfg.teacher.temp_warmup_start, cfg.teacher.temp) == (0.04, 0.07)
    assert cfg.head.out_dim == 131072 and not cfg.head.ibot_separate_head
    assert (cfg.mask.probability, cfg.mask.ratio_min, cfg.mask.ratio_max) == (0.5, 0.1, 0.5)
    assert cfg.loss.koleo_weight == 0 and cfg.loss.centering == "sinkhorn_knopp"
    # one local crop counted in the DINO denominator but skipped: DINO weighs half against iBOT
    assert (cfg.data.local_crops_number, cfg.loss.dino_weight, cfg.loss.ibot_weight) == (0, 0.5, 1)
    assert cfg.data.global_crop_size == 224 and cfg.data.global_crop_scale == (0.32, 1.0)
    assert cfg.data.resize_before_crop == 224
    assert cfg.model.init_from == "dinov2-" + {"s": "small", "b": "base", "l": "large"}[name[3]]
    assert cfg.run.precision == "fp16" and not cfg.run.fsdp_reshard_after_forward
    # augmentation: 4 drawn transforms at p = 0.85 with library defaults, flips at 0.85
    assert cfg.data.pixel_transforms == 4
    assert (cfg.data.pixel_transform_p, cfg.data.flip_p) == (0.85, 0.85)
    assert cfg.data.transform_params == "library"
    data = dataclasses.replace(cfg.data, synthetic=True)  # the pipeline only, no patch folder
    stream = stream_from_config(data, cfg.mask, patch_size=14, seed=0, rank=0, world_size=1,
                                start_step=0)  # fmt: skip
    some_of, *flips = stream.augment.pixel.transforms
    assert some_of.n == 4 and {t.p for t in some_of.transforms} == {0.85}
    assert {f.p for f in flips} == {0.85} and stream.augment.resize.height == 224
    # RedDino's teacher temperature never finishes its 30-epoch warm-up in a 10-epoch run
    schedules = build_schedules(cfg, batch)  # one process: train_*.sh run no torchrun
    assert schedules.teacher_temp[cfg.run.iters - 1] == pytest.approx(0.05, abs=1e-4)
    assert schedules.lr[epoch // 10] == pytest.approx(2e-4 * (batch / 1024) ** 0.5)
    assert schedules.at(0).last_layer_lr == schedules.at(0).lr


def test_dinov2_variants_keep_dinov2_defaults():
    for size in "sbl":
        cfg = load_config(f"vit{size}14_dinov2")
        assert cfg.optim.layerwise_decay == 0.9 and cfg.optim.freeze_last_layer_iters == 1250
        assert (cfg.run.iters, cfg.optim.warmup_iters) == (125000, 12500)
        assert cfg.model.drop_path_rate > 0 and cfg.loss.dino_weight == 1.0
        assert (cfg.data.pixel_transform_p, cfg.data.flip_p) == (1.0, 0.5)
    for name in ("vitb14_reddino", "vitl14_reddino", "bundled_default"):
        assert load_config(name).model.patch_size == 14


def test_optional_features_train_and_export(tmp_path):
    """Local crops, register tokens, drop path, separate iBOT head, KoLeo and EMA centering."""
    from napari_reddino.embed.backbones import load_backbone
    from training.train.export import export_teacher

    cfg = tiny(tmp_path, "run.iters=4", "data.local_crops_number=2", "data.local_crop_size=28",
               "model.num_register_tokens=2", "model.drop_path_rate=0.1",
               "head.ibot_separate_head=true", "loss.koleo_weight=0.1", "loss.centering=ema")
    Trainer(cfg, DistEnv()).fit()
    steps = [r for r in read_log(tmp_path / "run" / "log.jsonl") if "total_loss" in r]
    assert len(steps) == 4 and all(r["skipped"] == 0 for r in steps)
    assert all(isinstance(r["koleo_loss"], float) for r in steps)
    folder = export_teacher(tmp_path / "run", tmp_path / "model")
    backbone = load_backbone(f"local-dir:{folder}", device="cpu")
    assert backbone.model.num_prefix_tokens == 3  # CLS + 2 registers
    cls, patches = backbone.forward(np.zeros((1, 224, 224, 3), np.uint8))
    assert cls.shape == (1, 64) and patches.shape == (1, 16, 16, 64)
