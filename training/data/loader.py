"""Streaming batches of DINO crops + iBOT masks, sharded by rank and data-loader worker.

Every sample is a pure function of ``(seed, global sample index)`` and every mask set a pure
function of ``(seed, step)`` (each rank draws only its own rows). That makes three things exact
rather than approximate: a resumed run continues from the very batch it stopped at (the loader
position is just the step), N ranks see together the same global batch one process would, and
workers can run ahead in parallel.
Rank r of w takes samples ``[r*B, (r+1)*B)`` of each global batch of ``w*B``; worker k of n
builds steps ``start + k, start + k + n, ...`` (PyTorch hands worker outputs back round-robin,
so the order is preserved). Patch folders are drawn from whole on every rank; patch shards
(``data.shards``, :mod:`training.data.shards`) are read rank by rank: rank r's ``j``-th sample
is position ``j`` of its epoch share, so a rank reads only its share and batches stay a pure
function of ``(seed, rank, world size, step)``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from training.data.augment import CropSpec, PixelSpec, RedDinoAugmentation
from training.data.masking import sample_mask_rows
from training.data.patches import as_rgb_uint8, list_images
from training.data.shards import MANIFEST, PatchShards, epoch_share

SAMPLES_PER_SYNTHETIC_SMEAR = 8


@dataclass(frozen=True)
class MaskSpec:
    """iBOT masking of the global crops (grid = tokens per side)."""

    grid: int
    probability: float = 0.5
    ratio_range: tuple[float, float] = (0.1, 0.5)


SYNTHETIC_MODES = ("tiles", "cells")
CELL_MARGIN_RANGE = (1.3, 2.0)  # crop side / cell bbox side; the plugin's cls_crop uses 1.5


@lru_cache(maxsize=256)
def _decoded(path: str) -> np.ndarray:
    """A decoded patch; cached per worker because PNG decoding costs as much as two transforms."""
    image = as_rgb_uint8(iio.imread(path))
    image.setflags(write=False)  # shared between samples: transforms must copy, never write
    return image


@lru_cache(maxsize=4)
def _synthetic_smear(seed: int, size: int) -> tuple[np.ndarray, list]:
    """One generated smear and its cells' bounding boxes; cached: several samples share it."""
    from scipy import ndimage

    from napari_reddino.synthetic.smear import make_subject_styles, synthetic_smear

    style = make_subject_styles(1, seed=seed)[0]
    smear = synthetic_smear(shape=(size, size), seed=seed, style=style)
    return smear.image, [box for box in ndimage.find_objects(smear.labels) if box is not None]


class SmearCropStream(IterableDataset):
    """Endless stream of this rank's collated batches, starting at ``start_step``."""

    def __init__(
        self,
        files: list[Path],
        *,
        batch_size: int,
        crops: CropSpec,
        masks: MaskSpec,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        synthetic: bool = False,
        synthetic_fraction: float = 0.5,
        synthetic_shape: int = 512,
        synthetic_mode: str = "tiles",
        tile_size: int = 224,
        n_pixel_transforms: int = 4,
        pixel: PixelSpec | None = None,
        cache_decoded: bool = True,
        shards: PatchShards | None = None,
    ):
        super().__init__()
        if not files and shards is None and not synthetic:
            raise ValueError("no training images: give data.patch_dirs with image files, "
                             "data.shards or set data.synthetic")  # fmt: skip
        if files and shards is not None:
            raise ValueError("give data.patch_dirs or data.shards, not both")
        if synthetic_mode not in SYNTHETIC_MODES:
            raise ValueError(f"data.synthetic_mode must be one of {SYNTHETIC_MODES}, "
                             f"got {synthetic_mode!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.files = list(files)
        self.batch_size = batch_size
        self.crops = crops
        self.masks = masks
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.synthetic = synthetic
        self.synthetic_fraction = synthetic_fraction if files or shards is not None else 1.0
        self.shards = shards
        self._shares: dict[int, np.ndarray] = {}  # epoch -> this rank's share (the last two)
        if shards is not None and len(shards) < world_size:
            raise ValueError(f"{len(shards)} shard samples cannot be shared by {world_size} ranks")
        self.synthetic_shape = synthetic_shape
        self.synthetic_mode = synthetic_mode
        self.tile_size = tile_size
        pixel = pixel or PixelSpec(n=n_pixel_transforms)
        self.augment = RedDinoAugmentation(crops, pixel=pixel)
        self.read = _decoded if cache_decoded else _decoded.__wrapped__

    @property
    def global_batch(self) -> int:
        return self.batch_size * self.world_size

    def _image(self, sample_index: int, rng: np.random.Generator) -> np.ndarray:
        use_synthetic = self.synthetic and rng.random() < self.synthetic_fraction
        if not use_synthetic and self.shards is not None:
            return self.shards[self.shard_index(sample_index)]
        if not use_synthetic:
            return self.read(str(self.files[int(rng.integers(len(self.files)))]))
        smear_seed = self.seed * 1_000_003 + sample_index // SAMPLES_PER_SYNTHETIC_SMEAR
        smear, boxes = _synthetic_smear(smear_seed, self.synthetic_shape)
        if self.synthetic_mode == "cells" and boxes:
            from napari_reddino.embed.per_cell import crop_square

            box = boxes[int(rng.integers(len(boxes)))]
            return crop_square(smear, box, rng.uniform(*CELL_MARGIN_RANGE), self.tile_size)
        tile = min(self.tile_size, *smear.shape[:2])
        y = int(rng.integers(smear.shape[0] - tile + 1))
        x = int(rng.integers(smear.shape[1] - tile + 1))
        return smear[y : y + tile, x : x + tile]

    def shard_index(self, sample_index: int) -> int:
        """The shard sample behind a global sample index of this rank: its place in the share."""
        step, slot = divmod(sample_index, self.global_batch)
        local = step * self.batch_size + slot - self.rank * self.batch_size
        epoch, position = divmod(local, len(self.shards) // self.world_size)
        if epoch not in self._shares:
            if len(self._shares) >= 2:
                self._shares.pop(min(self._shares))
            self._shares[epoch] = epoch_share(self.shards.counts, seed=self.seed, epoch=epoch,
                                              rank=self.rank, world_size=self.world_size)
        return int(self._shares[epoch][position])

    def sample(self, sample_index: int) -> dict[str, torch.Tensor]:
        """The augmented crops of one global sample index (the same in every run)."""
        rng = np.random.default_rng([self.seed, sample_index])
        image = self._image(sample_index, rng)
        return self.augment(image, seed=int(rng.integers(2**31)))

    def step_masks(self, step: int) -> torch.Tensor:
        """This rank's (2*B, N) bool masks: its rows of the step's global mask batch.

        Only this rank's blocks are drawn (drawing the global batch's cost 4.4 s a step at
        17,920), yet the ranks' rows together are what one process draws for the same batch.
        """
        b, lo = self.batch_size, self.rank * self.batch_size
        # rows are [view 0 of every sample, view 1 of every sample], as the crops are collated
        rows = np.r_[lo : lo + b, self.global_batch + lo : self.global_batch + lo + b]
        return sample_mask_rows(2 * self.global_batch, rows, (self.masks.grid,) * 2,
                                self.masks.probability, self.masks.ratio_range,
                                [self.seed, 7919, step])  # fmt: skip

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """Collated batch of ``step`` for this rank: views stacked view-major like DINOv2."""
        first = step * self.global_batch + self.rank * self.batch_size
        samples = [self.sample(first + i) for i in range(self.batch_size)]
        global_crops = torch.stack([s["global"] for s in samples], dim=1)  # (2, B, 3, S, S)
        local_crops = torch.stack([s["local"] for s in samples], dim=1)  # (L, B, 3, s, s)
        return {
            "step": torch.tensor(step),
            "global_crops": global_crops.flatten(0, 1),
            "local_crops": local_crops.flatten(0, 1),
            "masks": self.step_masks(step),
        }

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        step = self.start_step + worker
        while True:
            yield self.batch(step)
            step += n_workers


def _ignore_sigterm(_worker_id: int) -> None:
    """Workers ignore SIGTERM (SLURM signals every process of the step): the main process
    finishes its step and checkpoint, then stops them (training/train/preemption.py)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def build_loader(stream: SmearCropStream, *, num_workers: int = 0, pin_memory: bool = False,
                 seed: int = 0):  # fmt: skip
    """DataLoader over pre-collated batches with persistent workers (and pinned memory on CUDA).

    It gets its own generator: ``iter(loader)`` would otherwise draw from the global RNG after a
    resume restored it, and shift the stochastic-depth stream of every later step.
    """
    return DataLoader(
        stream,
        generator=torch.Generator().manual_seed(seed),
        batch_size=None,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=pin_memory,
        prefetch_factor=2 if num_workers > 0 else None,
        worker_init_fn=_ignore_sigterm if num_workers > 0 else None,
    )


def stream_from_config(data_cfg, mask_cfg, *, patch_size: int, seed: int, rank: int,
                       world_size: int, start_step: int) -> SmearCropStream:
    """Build the stream a :class:`training.configs.TrainConfig` describes."""
    files = list_images(data_cfg.patch_dirs) if data_cfg.patch_dirs else []
    if data_cfg.patch_dirs and not files:
        sharded = [d for d in data_cfg.patch_dirs if (Path(d) / MANIFEST).is_file()]
        hint = f" ({sharded[0]} holds patch shards: give data.shards=[...])" if sharded else ""
        raise ValueError(f"no image files found under data.patch_dirs={data_cfg.patch_dirs}{hint}")
    shards = (PatchShards(data_cfg.shards, verify=data_cfg.verify_shards)
              if data_cfg.shards else None)  # fmt: skip
    crops = CropSpec(
        global_size=data_cfg.global_crop_size,
        global_scale=tuple(data_cfg.global_crop_scale),
        global_ratio=tuple(data_cfg.global_crop_ratio),
        local_number=data_cfg.local_crops_number,
        local_size=data_cfg.local_crop_size,
        local_scale=tuple(data_cfg.local_crop_scale),
        resize=data_cfg.resize_before_crop,
    )
    pixel = PixelSpec(n=data_cfg.pixel_transforms, p=data_cfg.pixel_transform_p,
                      flip_p=data_cfg.flip_p, params=data_cfg.transform_params,
                      second_n=data_cfg.second_view_pixel_transforms,
                      args=data_cfg.transform_args or None)  # fmt: skip
    if data_cfg.global_crop_size % patch_size:
        raise ValueError(
            f"data.global_crop_size {data_cfg.global_crop_size} is not a multiple of the "
            f"patch size {patch_size}"
        )
    masks = MaskSpec(
        grid=data_cfg.global_crop_size // patch_size,
        probability=mask_cfg.probability,
        ratio_range=(mask_cfg.ratio_min, mask_cfg.ratio_max),
    )
    return SmearCropStream(
        files,
        batch_size=data_cfg.batch_size_per_gpu,
        crops=crops,
        masks=masks,
        seed=seed,
        rank=rank,
        world_size=world_size,
        start_step=start_step,
        synthetic=data_cfg.synthetic,
        synthetic_fraction=data_cfg.synthetic_fraction,
        synthetic_shape=data_cfg.synthetic_shape,
        synthetic_mode=data_cfg.synthetic_mode,
        tile_size=data_cfg.synthetic_tile,
        pixel=pixel,
        shards=shards,
    )
