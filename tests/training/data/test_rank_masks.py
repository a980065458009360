"""Each rank draws the iBOT masks of its local batch only, reproducibly per (seed, rank, step)."""

from __future__ import annotations

import torch

from training.configs import load_config
from training.data import masking
from training.data.loader import stream_from_config


def _stream(rank: int, world_size: int, batch: int = 280, seed: int = 0):
    cfg = load_config("tiny_cpu", [f"data.batch_size_per_gpu={batch}", f"run.seed={seed}"])
    return stream_from_config(cfg.data, cfg.mask, patch_size=14, seed=seed, rank=rank,
                              world_size=world_size, start_step=0)  # fmt: skip


def test_a_rank_draws_only_its_local_batch(monkeypatch):
    calls = []
    original = masking.BlockMaskGenerator.__call__

    def counting(self, n_masked=0, generator=None):
        calls.append(n_masked)
        return original(self, n_masked, generator)

    monkeypatch.setattr(masking.BlockMaskGenerator, "__call__", counting)
    stream = _stream(rank=3, world_size=64)  # global batch 17,920: 35,840 global crops
    masks = stream.step_masks(5)
    grid = stream.masks.grid
    assert masks.shape == (2 * 280, grid * grid) and masks.dtype == torch.bool
    assert len(calls) <= 2 * 280  # blocks drawn for this rank's crops, not the global batch's
    share = masks.any(dim=1).float().mean().item()
    assert 0.3 < share < 0.7  # about mask.probability of the crops carry a mask


def test_masks_are_reproducible_per_seed_rank_and_step():
    masks = _stream(rank=1, world_size=4, batch=16).step_masks(7)
    assert torch.equal(masks, _stream(rank=1, world_size=4, batch=16).step_masks(7))
    assert masks.shape[0] == 32
    for other in (_stream(rank=2, world_size=4, batch=16).step_masks(7),
                  _stream(rank=1, world_size=4, batch=16).step_masks(8),
                  _stream(rank=1, world_size=4, batch=16, seed=1).step_masks(7)):  # fmt: skip
        assert not torch.equal(masks, other)
