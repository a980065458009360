"""Export: the plugin loads the trained teacher and gets exactly the teacher's features."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from napari_reddino.embed.backbones import load_backbone
from training.configs import config_from_dict, load_config
from training.models.student_teacher import StudentTeacher
from training.train.checkpoint import latest_checkpoint, load_checkpoint
from training.train.distributed import DistEnv
from training.train.export import export_teacher
from training.train.loop import Trainer

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    cfg = load_config("tiny_cpu", [f"run.output_dir={out}", "run.iters=3"])
    Trainer(cfg, DistEnv()).fit()
    return out


def _teacher_tokens(run: Path, images_uint8: np.ndarray) -> torch.Tensor:
    """The trained teacher's own output tokens at 224 px, computed through the training model."""
    state = load_checkpoint(latest_checkpoint(run))
    cfg = config_from_dict(state["config"])
    models = StudentTeacher(cfg.model, cfg.head, cfg.data.global_crop_size)
    models.load_state_dict(state["models"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        return models.teacher.tokens(x)


def test_export_round_trip_gives_the_teachers_features(trained_run, tmp_path):
    folder = export_teacher(trained_run, tmp_path / "model", img_size=224,
                            state_dict_path=tmp_path / "teacher.pth")  # fmt: skip
    backbone = load_backbone(f"local-dir:{folder}", device="cpu", dtype="float32")
    assert (backbone.img_size, backbone.patch_size, backbone.embed_dim) == (224, 14, 64)
    images = (np.random.default_rng(0).random((2, 224, 224, 3)) * 255).astype(np.uint8)
    cls, patches = backbone.forward(images)
    expected = _teacher_tokens(trained_run, images)
    np.testing.assert_allclose(cls, expected[:, 0].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        patches, expected[:, 1:].reshape(2, 16, 16, 64).numpy(), rtol=1e-4, atol=1e-4
    )
    # the plain state dict loads into stock timm with the same shape arguments
    plain = timm.create_model(
        "vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224,
        embed_dim=64, depth=2, num_heads=2, checkpoint_path=str(tmp_path / "teacher.pth"),
    ).eval()  # fmt: skip
    with torch.no_grad():
        plain_cls = plain(backbone.preprocess(images).float())
    np.testing.assert_allclose(plain_cls.numpy(), cls, rtol=1e-4, atol=1e-4)
    assert (folder / "training_config.yaml").is_file()


def test_export_cli_and_clear_error(trained_run, tmp_path):
    ok = subprocess.run(
        [sys.executable, "-m", "training", "export", str(trained_run), "--out", tmp_path / "m"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert (tmp_path / "m" / "model.safetensors").is_file()
    missing = subprocess.run(
        [sys.executable, "-m", "training", "export", str(tmp_path / "nope"), "--out", "x"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "no checkpoint or run folder" in missing.stderr
    assert "Traceback" not in missing.stderr
