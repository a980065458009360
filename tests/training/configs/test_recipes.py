"""The bundled recipes resolve to what RedDino's scripts and DINOv2's default config ran."""

from __future__ import annotations

import pytest

from training.configs import CONFIG_DIR, load_config
from training.train.loop import peak_lr

# RedDino's 2_gpu/train_*.sh run `python dinov2/train/train.py` (no torchrun): one process
REDDINO_ONE_PROCESS = {"s": (280, 1.0458e-4), "b": (196, 8.75e-5), "l": (64, 5.0e-5)}


@pytest.mark.parametrize("size", sorted(REDDINO_ONE_PROCESS))
def test_reddino_configs_launch_one_process_at_its_batch_and_lr(size):
    batch, lr = REDDINO_ONE_PROCESS[size]
    name = f"vit{size}14_reddino"
    cfg = load_config(name)
    text = (CONFIG_DIR / f"{name}.yaml").read_text()
    assert f"# Launch: python -m training train --config {name}" in text
    assert "--nproc_per_node" not in text
    assert cfg.data.batch_size_per_gpu == batch  # x 1 process = the global batch
    assert peak_lr(cfg, batch) == pytest.approx(lr, rel=1e-3)
    assert f"global\n# batch was one per-GPU batch ({batch})" in text


def test_vits14_dinov2_is_dinov2_default_config_at_vit_s():
    cfg = load_config("vits14_dinov2")
    assert cfg.model.arch == "vit_small_patch14_dinov2" and cfg.model.patch_size == 14
    assert cfg.model.drop_path_rate == 0.3 and cfg.model.init_from is None
    assert (cfg.head.out_dim, cfg.head.hidden_dim, cfg.head.bottleneck_dim) == (65536, 2048, 256)
    assert not cfg.head.ibot_separate_head
    assert (cfg.loss.dino_weight, cfg.loss.ibot_weight, cfg.loss.koleo_weight) == (1.0, 1.0, 0.1)
    assert cfg.loss.centering == "ema"
    assert (cfg.mask.probability, cfg.mask.ratio_min, cfg.mask.ratio_max) == (0.5, 0.1, 0.5)
    assert (cfg.teacher.momentum_start, cfg.teacher.momentum_end) == (0.992, 1.0)
    assert (cfg.teacher.temp_warmup_start, cfg.teacher.temp) == (0.04, 0.07)
    assert cfg.teacher.temp_warmup_iters == 30 * 1250
    optim = cfg.optim
    assert (optim.base_lr, optim.lr_scaling, optim.reference_batch) == (4e-3, "sqrt", 1024)
    assert (optim.weight_decay, optim.weight_decay_end, optim.min_lr) == (0.04, 0.4, 1e-6)
    assert (optim.warmup_iters, optim.freeze_last_layer_iters) == (10 * 1250, 1250)
    assert (optim.layerwise_decay, optim.patch_embed_lr_mult, optim.clip_grad) == (0.9, 0.2, 3.0)
    data = cfg.data
    assert (data.batch_size_per_gpu, data.local_crops_number, data.local_crop_size) == (64, 8, 98)
    assert (data.global_crop_size, data.global_crop_scale) == (224, (0.32, 1.0))
    assert data.local_crop_scale == (0.05, 0.32)
    assert cfg.run.iters == 100 * 1250
