"""iBOT masks: blocks of patches hidden from the student, sampled per image as in DINOv2.

Blocks (not scattered patches) force the student to infer cell parts from context, since a
single hidden patch is trivially interpolated from its neighbors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch


def _numpy_rng(generator) -> np.random.Generator:
    """A numpy Generator from a numpy Generator, a torch.Generator, an int seed or None."""
    if isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    if generator is None or isinstance(generator, (int, np.integer)):
        return np.random.default_rng(generator)
    raise TypeError(f"generator must be a numpy/torch Generator, an int or None, got {generator!r}")


class BlockMaskGenerator:
    """Draws a (h, w) bool mask of about ``n_masked`` patches made of rectangular blocks.

    Each block has an area between ``min_num_patches`` and what is left to mask (capped by
    ``max_num_patches``) and an aspect ratio log-uniform in [1/max_aspect, max_aspect]. The count
    never exceeds ``n_masked``; it can fall short when ten tries in a row find no room.
    """

    def __init__(
        self,
        grid: tuple[int, int] = (16, 16),
        min_num_patches: int = 4,
        max_aspect: float = 3.0,
        max_num_patches: int | None = None,
        generator=None,
    ):
        self.height, self.width = (int(v) for v in grid)
        if self.height < 1 or self.width < 1:
            raise ValueError(f"mask grid must be positive, got {grid}")
        if max_aspect < 1:
            raise ValueError(f"max_aspect must be >= 1, got {max_aspect}")
        self.num_patches = self.height * self.width
        self.min_num_patches = min_num_patches
        self.max_num_patches = max_num_patches
        self.log_aspect_range = (-math.log(max_aspect), math.log(max_aspect))
        self.rng = _numpy_rng(generator)

    def _add_block(self, mask: np.ndarray, max_block: int, rng: np.random.Generator) -> int:
        """Try up to ten blocks; mask the first one that adds new patches. Returns how many."""
        for _ in range(10):
            area_bounds = sorted((self.min_num_patches, max_block))
            target_area = rng.uniform(*area_bounds)
            aspect = math.exp(rng.uniform(*self.log_aspect_range))
            block_h = round(math.sqrt(target_area * aspect))
            block_w = round(math.sqrt(target_area / aspect))
            if not (0 < block_h < self.height and 0 < block_w < self.width):
                continue
            top = int(rng.integers(0, self.height - block_h + 1))
            left = int(rng.integers(0, self.width - block_w + 1))
            window = mask[top : top + block_h, left : left + block_w]
            new_patches = block_h * block_w - int(window.sum())
            if 0 < new_patches <= max_block:
                window[:] = True
                return new_patches
        return 0

    def __call__(self, n_masked: int = 0, generator=None) -> np.ndarray:
        if not 0 <= n_masked <= self.num_patches:
            raise ValueError(f"n_masked must be in [0, {self.num_patches}], got {n_masked}")
        rng = self.rng if generator is None else _numpy_rng(generator)
        mask = np.zeros((self.height, self.width), dtype=bool)
        count = 0
        while count < n_masked:
            max_block = n_masked - count
            if self.max_num_patches is not None:
                max_block = min(max_block, self.max_num_patches)
            added = self._add_block(mask, max_block, rng)
            if added == 0:
                break
            count += added
        return mask


class MaskBatch(NamedTuple):
    """Masks for one batch of global crops, unpackable as ``masks, masks_weight, mask_indices``."""

    masks: torch.Tensor  # (B, h*w) bool
    masks_weight: torch.Tensor  # (n_masked_total,) float: 1 / n_masked(image) per masked token
    mask_indices: torch.Tensor  # (n_masked_total,) long: flat indices into masks.flatten()

    @property
    def n_masked_patches(self) -> int:
        return int(self.mask_indices.numel())


def sample_masks(
    batch_size: int,
    grid: tuple[int, int] = (16, 16),
    mask_probability: float = 0.5,
    ratio_range: tuple[float, float] = (0.1, 0.5),
    generator=None,
    *,
    mask_generator: BlockMaskGenerator | None = None,
) -> MaskBatch:
    """DINOv2's collate masking: ``int(B * p)`` images masked, the rest left whole.

    The masked images' ratios are stratified: image i draws its ratio uniformly in the i-th of
    equal slices of ``ratio_range``, so each batch covers the range evenly. The image order is then
    shuffled. ``generator`` (numpy/torch Generator or seed) makes the draw reproducible.
    """
    low, high = ratio_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    rng = _numpy_rng(generator)
    if mask_generator is None:
        n_tokens = int(grid[0]) * int(grid[1])
        mask_generator = BlockMaskGenerator(grid, max_num_patches=int(0.5 * n_tokens))
    n_tokens = mask_generator.num_patches
    n_masked_images = int(batch_size * mask_probability)
    edges = np.linspace(low, high, n_masked_images + 1)
    image_masks = []
    for i in range(n_masked_images):
        ratio = rng.uniform(edges[i], edges[i + 1])
        image_masks.append(mask_generator(int(n_tokens * ratio), generator=rng))
    image_masks += [np.zeros(mask_generator(0).shape, dtype=bool)] * (batch_size - n_masked_images)
    order = rng.permutation(batch_size)
    masks = torch.from_numpy(np.stack([image_masks[i] for i in order]).reshape(batch_size, -1))
    per_image_weight = 1.0 / masks.sum(dim=-1).clamp(min=1).float()
    masks_weight = per_image_weight.unsqueeze(-1).expand_as(masks)[masks]
    mask_indices = masks.flatten().nonzero().flatten()
    return MaskBatch(masks, masks_weight, mask_indices)


def sample_mask_rows(batch_size: int, rows: np.ndarray | list[int], grid: tuple[int, int],
                     mask_probability: float, ratio_range: tuple[float, float],
                     seed: list[int]) -> torch.Tensor:  # fmt: skip
    """Rows ``rows`` of a DINOv2 mask batch of ``batch_size``, drawing only those rows' blocks.

    The batch-level draws (which images are masked, their stratified ratios, the shuffle) are
    cheap vectors over the whole batch; the costly block masks are drawn for ``rows`` alone,
    image i from its own ``seed + [i]`` stream. So a rank asks for its local rows in O(local
    batch), and the rows of all ranks together are the batch one process would draw.
    """
    low, high = ratio_range
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}")
    if not 0.0 <= mask_probability <= 1.0:
        raise ValueError(f"mask_probability must be in [0, 1], got {mask_probability}")
    rng = np.random.default_rng(seed)
    n_masked_images = int(batch_size * mask_probability)
    edges = np.linspace(low, high, n_masked_images + 1)
    ratios = rng.uniform(edges[:-1], edges[1:])
    order = rng.permutation(batch_size)
    generator = BlockMaskGenerator(grid, max_num_patches=int(0.5 * grid[0] * grid[1]))
    masks = np.zeros((len(rows), generator.num_patches), dtype=bool)
    for out, row in enumerate(rows):
        image = int(order[row])
        if image < n_masked_images:
            n_masked = int(generator.num_patches * ratios[image])
            masks[out] = generator(n_masked, np.random.default_rng([*seed, image])).reshape(-1)
    return torch.from_numpy(masks)
