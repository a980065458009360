"""RedDino's augmentation: 4 of 33 Albumentations pixel transforms + flips/rot90, then DINO crops.

RedDino replaced DINOv2's colour jitter/solarize recipe with a bag of pixel-level transforms that
mimic stain, optics and camera variation between labs; the crops then follow DINOv2 (global crops at
scale 0.32-1, optional local crops). Every sample is reproducible from one integer seed, which is
what lets a resumed or multi-process run see the very same images as a single uninterrupted one.
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def pixel_transforms() -> list[A.BasicTransform]:
    """RedDino's 33 pixel-level transforms, each always applied once chosen by ``A.SomeOf``."""
    return [
        A.Blur(blur_limit=(3, 5), p=1.0),
        A.CLAHE(p=1.0),
        A.ChannelShuffle(p=1.0),
        A.ChannelDropout(p=1.0),
        A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.05, p=1.0),
        A.Defocus(radius=(1, 3), p=1.0),
        A.Downscale(scale_range=(0.5, 0.9), p=1.0),
        A.Emboss(p=1.0),
        A.Equalize(p=1.0),
        A.FancyPCA(p=1.0),
        A.GaussNoise(std_range=(0.02, 0.08), p=1.0),
        A.GaussianBlur(blur_limit=(3, 5), p=1.0),
        A.GlassBlur(sigma=0.5, max_delta=1, iterations=1, p=1.0),
        A.HueSaturationValue(p=1.0),
        A.ISONoise(p=1.0),
        A.ImageCompression(quality_range=(40, 95), p=1.0),
        A.InvertImg(p=1.0),
        A.MedianBlur(blur_limit=(3, 5), p=1.0),
        A.MotionBlur(blur_limit=(3, 7), p=1.0),
        A.MultiplicativeNoise(p=1.0),
        A.Posterize(p=1.0),
        A.RandomBrightnessContrast(p=1.0),
        A.RGBShift(p=1.0),
        A.RandomGamma(p=1.0),
        A.RandomRain(drop_length=8, blur_value=3, p=1.0),
        A.RandomShadow(p=1.0),
        A.RandomSnow(p=1.0),
        A.RandomSunFlare(src_radius=40, p=1.0),
        A.RandomToneCurve(p=1.0),
        A.RandomFog(p=1.0),
        A.RingingOvershoot(p=1.0),
        A.Sharpen(p=1.0),
        A.Solarize(p=1.0),
    ]


@dataclass(frozen=True)
class CropSpec:
    """DINO multi-crop geometry."""

    global_size: int = 224
    global_scale: tuple[float, float] = (0.32, 1.0)
    global_ratio: tuple[float, float] = (0.75, 4 / 3)
    local_number: int = 0
    local_size: int = 98
    local_scale: tuple[float, float] = (0.05, 0.32)


class RedDinoAugmentation:
    """uint8 HWC image -> ``{"global": (2, 3, S, S), "local": (L, 3, s, s)}`` normalised tensors."""

    def __init__(self, crops: CropSpec = CropSpec(), n_pixel_transforms: int = 4):
        if not 0 <= n_pixel_transforms <= 33:
            raise ValueError(f"n_pixel_transforms must be in 0..33, got {n_pixel_transforms}")
        self.crops = crops
        self.pixel = A.Compose(
            [
                A.SomeOf(pixel_transforms(), n=n_pixel_transforms, replace=False, p=1.0),
                A.HorizontalFlip(p=0.5),
                A.VerticalFlip(p=0.5),
                A.RandomRotate90(p=0.5),
            ]
        )
        self.global_crop = A.Compose(
            [A.RandomResizedCrop(size=(crops.global_size,) * 2, scale=crops.global_scale,
                                 ratio=crops.global_ratio)]
        )
        self.local_crop = A.Compose(
            [A.RandomResizedCrop(size=(crops.local_size,) * 2, scale=crops.local_scale)]
        )
        self._mean = np.asarray(IMAGENET_MEAN, np.float32) * 255
        self._std = np.asarray(IMAGENET_STD, np.float32) * 255

    def _to_tensor(self, image: np.ndarray) -> torch.Tensor:
        normalised = (image.astype(np.float32) - self._mean) / self._std
        return torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))

    def _view(self, image: np.ndarray, crop: A.Compose) -> np.ndarray:
        return self.pixel(image=crop(image=image)["image"])["image"]

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        """Two augmented global crops (+ local crops) of ``image``, reproducible by ``seed``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        seeds = np.random.SeedSequence(seed).generate_state(3)
        for transform, sub_seed in zip((self.pixel, self.global_crop, self.local_crop), seeds):
            transform.set_random_seed(int(sub_seed))
        globals_ = [self._to_tensor(self._view(image, self.global_crop)) for _ in range(2)]
        locals_ = [
            self._to_tensor(self._view(image, self.local_crop))
            for _ in range(self.crops.local_number)
        ]
        size = self.crops.local_size
        return {
            "global": torch.stack(globals_),
            "local": torch.stack(locals_) if locals_ else torch.empty(0, 3, size, size),
        }
