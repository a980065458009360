"""Continued pretraining keeps the checkpoint's trained iBOT mask token (timm drops it)."""

from __future__ import annotations

import timm
import torch
from safetensors.torch import load_file, save_file

from napari_reddino.embed.backbones import export_backbone
from training.configs import HeadConfig, ModelConfig
from training.models.student_teacher import StudentTeacher, pretrained_mask_token

SHAPE = {"embed_dim": 48, "depth": 2, "num_heads": 2}


def _folder(tmp_path, token: torch.Tensor | None):
    """A tiny timm backbone folder; ``token`` is added to its weights as DINOv2 stores it."""
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                              img_size=56, init_values=1e-5, **SHAPE)  # fmt: skip
    folder = export_backbone(model, tmp_path / "bb", img_size=56, model_args=SHAPE)
    if token is not None:
        weights = load_file(folder / "model.safetensors")
        save_file({**weights, "mask_token": token}, folder / "model.safetensors")
    return folder


def _student(folder) -> StudentTeacher:
    cfg = ModelConfig(init_from=f"local-dir:{folder}", **SHAPE)
    return StudentTeacher(cfg, HeadConfig(out_dim=32, hidden_dim=16, bottleneck_dim=8), 56)


def test_the_checkpoint_mask_token_is_kept(tmp_path):
    token = torch.randn(1, 48)
    folder = _folder(tmp_path, token)
    assert torch.equal(pretrained_mask_token(f"local-dir:{folder}", 48), token)
    model = _student(folder)
    assert torch.equal(model.student.mask_token.detach(), token)
    assert model.student.mask_token.requires_grad
    assert torch.equal(model.teacher.mask_token, token)


def test_a_checkpoint_without_one_starts_at_zero(tmp_path):
    folder = _folder(tmp_path, None)
    assert pretrained_mask_token(f"local-dir:{folder}", 48) is None
    assert not _student(folder).student.mask_token.any()


def test_a_token_of_another_width_is_ignored(tmp_path):
    folder = _folder(tmp_path, torch.randn(1, 64))
    assert pretrained_mask_token(f"local-dir:{folder}", 48) is None
