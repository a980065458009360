"""iBOT block masks: counts, blocks, stratified ratios, weights and reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.data.masking import BlockMaskGenerator, sample_masks


def test_block_generator_masks_at_most_the_target_in_blocks():
    generator = BlockMaskGenerator(grid=(16, 16), min_num_patches=4, max_aspect=3, generator=0)
    for target in (0, 10, 60, 128):
        mask = generator(target)
        assert mask.shape == (16, 16) and mask.dtype == bool
        assert target * 0.8 <= mask.sum() <= target
    with pytest.raises(ValueError, match="n_masked"):
        generator(300)


def test_each_block_is_a_rectangle_within_the_aspect_range():
    generator = BlockMaskGenerator(grid=(32, 32), min_num_patches=16, max_aspect=3)
    rng = np.random.default_rng(0)
    aspects = []
    for _ in range(50):
        mask = np.zeros((32, 32), dtype=bool)
        added = generator._add_block(mask, 60, rng)
        rows, cols = np.nonzero(mask)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        assert added == mask.sum() == height * width  # one filled rectangle
        assert 12 <= added <= 60
        aspects.append(height / width)
    assert 1 / 3.5 <= min(aspects) < 0.7 and 1.4 < max(aspects) <= 3.5  # both orientations


def test_sample_masks_half_the_images_with_stratified_ratios():
    batch_size, n_tokens = 16, 256
    edges = np.linspace(0.1, 0.5, 9) * n_tokens
    in_stratum = 0
    for seed in range(10):
        masks, masks_weight, mask_indices = sample_masks(
            batch_size, (16, 16), mask_probability=0.5, ratio_range=(0.1, 0.5), generator=seed
        )
        counts = masks.sum(dim=1).numpy()
        assert masks.shape == (16, 256) and masks.dtype == torch.bool
        assert (counts == 0).sum() == 8  # int(16 * 0.5) masked images
        masked_counts = np.sort(counts[counts > 0])
        assert (masked_counts <= edges[1:]).all()  # never above its stratum
        in_stratum += int((masked_counts >= np.floor(edges[:-1])).sum())
        torch.testing.assert_close(mask_indices, masks.flatten().nonzero().flatten())
        per_image = torch.zeros(batch_size).index_add_(0, mask_indices // 256, masks_weight)
        torch.testing.assert_close(per_image, (torch.from_numpy(counts) > 0).float())
    assert in_stratum >= 0.9 * 80


def test_sample_masks_is_reproducible_and_shuffled():
    first = sample_masks(8, (8, 8), generator=torch.Generator().manual_seed(3))
    again = sample_masks(8, (8, 8), generator=torch.Generator().manual_seed(3))
    assert torch.equal(first.masks, again.masks)
    assert first.n_masked_patches == int(first.masks.sum())
    masked_rows = {
        tuple(np.flatnonzero(sample_masks(8, (8, 8), generator=s).masks.sum(1))) for s in range(10)
    }
    assert len(masked_rows) > 1  # which images are masked changes with the seed
    with pytest.raises(ValueError, match="ratio_range"):
        sample_masks(4, (8, 8), ratio_range=(0.6, 0.2))
