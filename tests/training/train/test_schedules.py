"""Cosine schedules with freeze/warmup, the sqrt lr rule, and ViT parameter groups."""

from __future__ import annotations

import itertools
import math

import pytest
import timm
import torch

from training.models.heads import DINOHead
from training.train.param_groups import apply_lr_wd, build_param_groups
from training.train.schedules import CosineSchedule, scaled_lr


def test_freeze_warmup_then_cosine_to_final():
    schedule = CosineSchedule(
        base=1.0, final=0.1, total_iters=20, warmup_iters=4, start_warmup=0.2, freeze_iters=2
    )
    values = [schedule[i] for i in range(20)]
    assert values[:2] == [0.0, 0.0]
    assert values[2:6] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert values[6] == pytest.approx(1.0)
    assert values[13] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 13)))
    assert values[19] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[6:]))
    assert schedule[500] == 0.1
    rebuilt = CosineSchedule.from_state_dict(schedule.state_dict())
    assert [rebuilt[i] for i in range(20)] == values
    with pytest.raises(ValueError, match="exceed"):
        CosineSchedule(1.0, 0.0, total_iters=5, warmup_iters=6)


def test_increasing_schedule_for_teacher_momentum():
    momentum = CosineSchedule(base=0.994, final=1.0, total_iters=100)
    assert momentum[0] == pytest.approx(0.994) and momentum[99] == pytest.approx(1.0)


def test_sqrt_lr_rule():
    assert scaled_lr(2e-4, 256) == pytest.approx(1e-4)
    assert scaled_lr(2e-4, 1024) == pytest.approx(2e-4)
    with pytest.raises(ValueError):
        scaled_lr(2e-4, 0)


class _Student(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone = timm.create_model(
            "vit_small_patch14_reg4_dinov2",
            pretrained=False,
            img_size=28,
            embed_dim=32,
            depth=3,
            num_heads=2,
            init_values=1e-5,
            num_classes=0,
        )
        self.backbone.mask_token = torch.nn.Parameter(torch.zeros(1, 32))
        self.dino_head = DINOHead(32, 16, hidden_dim=8, bottleneck_dim=4)


def _group_of(groups, name):
    return next(g for g in groups if name in g["names"])


def test_param_groups_decay_sets_and_layer_decay():
    model = _Student()
    groups = build_param_groups(
        model, weight_decay=0.04, layer_decay=0.5, patch_embed_lr_mult=0.2, num_layers=None
    )
    names = [n for g in groups for n in g["names"]]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable)
    no_decay = {n for g in groups if g["wd_multiplier"] == 0.0 for n in g["names"]}
    for name in (
        "backbone.blocks.0.norm1.weight",
        "backbone.blocks.1.ls1.gamma",
        "backbone.blocks.2.attn.qkv.bias",
        "backbone.norm.weight",
        "dino_head.mlp.0.bias",
    ):
        assert name in no_decay, name
    for name in (  # DINOv2 decays the position embedding and the learnt tokens too
        "backbone.pos_embed",
        "backbone.cls_token",
        "backbone.reg_token",
        "backbone.mask_token",
        "backbone.blocks.0.attn.qkv.weight",
        "backbone.patch_embed.proj.weight",
        "dino_head.mlp.0.weight",
    ):
        assert name not in no_decay, name
        assert _group_of(groups, name)["weight_decay"] == pytest.approx(0.04)
    # 3 blocks: embeddings are layer 0, block i is layer i + 1, the rest layer 4.
    lr_of = {n: g["lr_multiplier"] for g in groups for n in g["names"]}
    assert lr_of["backbone.pos_embed"] == pytest.approx(0.5**4)
    assert lr_of["backbone.patch_embed.proj.weight"] == pytest.approx(0.5**4 * 0.2)
    assert lr_of["backbone.blocks.0.mlp.fc1.weight"] == pytest.approx(0.5**3)
    assert lr_of["backbone.blocks.2.mlp.fc1.weight"] == pytest.approx(0.5)
    assert lr_of["backbone.norm.weight"] == 1.0 and lr_of["dino_head.mlp.0.weight"] == 1.0
    last = _group_of(groups, "dino_head.last_layer.parametrizations.weight.original1")
    assert last["is_last_layer"]


def test_apply_lr_wd_through_the_multipliers():
    model = _Student()
    groups = build_param_groups(
        model, weight_decay=0.04, layer_decay=0.5, patch_embed_lr_mult=1.0, num_layers=3
    )
    optimizer = torch.optim.AdamW(groups)
    apply_lr_wd(optimizer, lr=1e-3, weight_decay=0.1, last_layer_lr=0.0)
    for group in optimizer.param_groups:
        expected_lr = 0.0 if group["is_last_layer"] else 1e-3 * group["lr_multiplier"]
        assert group["lr"] == pytest.approx(expected_lr)
        assert group["weight_decay"] == pytest.approx(0.1 * group["wd_multiplier"])
