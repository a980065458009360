"""RedDino's augmentation: n of 33 Albumentations pixel transforms + flips/rot90, then DINO crops.

RedDino replaced DINOv2's color jitter/solarize recipe with a bag of pixel-level transforms that
mimic stain, optics and camera variation between labs; the crops then follow DINOv2 (global crops at
scale 0.32-1, optional local crops). Every sample is reproducible from one integer seed, which is
what lets a resumed or multi-process run see the very same images as a single uninterrupted one.
Crops leave here as uint8 (4x less to copy between processes); :func:`normalize` turns them into
the model's float input on the training device.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import albumentations as A
import numpy as np
import torch

from training.data.fast_transforms import FastGlassBlur, FastRandomFog

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PARAM_STYLES = ("tuned", "library")

# Milder-than-default parameters of the earlier recipe ("tuned"); RedDino used the library's
# defaults for every transform ("library").
_TUNED = {
    "Blur": {"blur_limit": (3, 5)},
    "ColorJitter": {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2, "hue": 0.05},
    "Defocus": {"radius": (1, 3)},
    "Downscale": {"scale_range": (0.5, 0.9)},
    "GaussNoise": {"std_range": (0.02, 0.08)},
    "GaussianBlur": {"blur_limit": (3, 5)},
    "GlassBlur": {"sigma": 0.5, "max_delta": 1, "iterations": 1},
    "ImageCompression": {"quality_range": (40, 95)},
    "MedianBlur": {"blur_limit": (3, 5)},
    "MotionBlur": {"blur_limit": (3, 7)},
    "RandomRain": {"drop_length": 8, "blur_value": 3},
    "RandomSunFlare": {"src_radius": 40},
}
PIXEL_TRANSFORM_NAMES = (
    "Blur", "CLAHE", "ChannelShuffle", "ChannelDropout", "ColorJitter", "Defocus", "Downscale",
    "Emboss", "Equalize", "FancyPCA", "GaussNoise", "GaussianBlur", "GlassBlur",
    "HueSaturationValue", "ISONoise", "ImageCompression", "InvertImg", "MedianBlur", "MotionBlur",
    "MultiplicativeNoise", "Posterize", "RandomBrightnessContrast", "RGBShift", "RandomGamma",
    "RandomRain", "RandomShadow", "RandomSnow", "RandomSunFlare", "RandomToneCurve", "RandomFog",
    "RingingOvershoot", "Sharpen", "Solarize",
)  # fmt: skip
# same output as the library's class for the same draws, only faster
# (tests/training/data/test_augment.py)
_FAST = {"RandomFog": FastRandomFog, "GlassBlur": FastGlassBlur}


def _transform_kwargs(params: str, args: dict | None) -> dict[str, dict]:
    """The style's keyword arguments with ``args`` (``data.transform_args``) on top.

    YAML lists become tuples, the form albumentations' range arguments take.
    """
    if params not in PARAM_STYLES:
        raise ValueError(f"data.transform_params must be one of {PARAM_STYLES}, got {params!r}")
    unknown = sorted(set(args or {}) - set(PIXEL_TRANSFORM_NAMES))
    if unknown:
        raise ValueError(f"data.transform_args names unknown transforms {unknown}; "
                         f"known: {list(PIXEL_TRANSFORM_NAMES)}")  # fmt: skip
    kwargs = {name: dict(values) for name, values in (_TUNED if params == "tuned" else {}).items()}
    for name, values in (args or {}).items():
        kwargs.setdefault(name, {}).update(
            {key: tuple(value) if isinstance(value, list) else value
             for key, value in values.items()}
        )  # fmt: skip
    return kwargs


def pixel_transforms(p: float = 1.0, params: str = "tuned", fast: bool = True,
                     args: dict | None = None) -> list:  # fmt: skip
    """RedDino's 33 pixel-level transforms; each acts with probability ``p`` once drawn.

    ``args`` maps a transform name to keyword arguments over the ``params`` style (the
    reddino configs give there the albumentations 1.x defaults RedDino ran with).
    ``fast=False`` gives the library's own classes (the benchmark's baseline).
    """
    kwargs = _transform_kwargs(params, args)
    return [
        ((_FAST.get(name) if fast else None) or getattr(A, name))(**kwargs.get(name, {}), p=p)
        for name in PIXEL_TRANSFORM_NAMES
    ]


@dataclass(frozen=True)
class CropSpec:
    """DINO multi-crop geometry (``resize``: square side the image is resized to first)."""

    global_size: int = 224
    global_scale: tuple[float, float] = (0.32, 1.0)
    global_ratio: tuple[float, float] = (0.75, 4 / 3)
    local_number: int = 0
    local_size: int = 98
    local_scale: tuple[float, float] = (0.05, 0.32)
    resize: int | None = None


@dataclass(frozen=True)
class PixelSpec:
    """Which pixel transforms act, and how often (RedDino: 4 drawn, each and the flips at 0.85)."""

    n: int = 4
    p: float = 1.0
    flip_p: float = 0.5
    params: str = "tuned"
    fast: bool = True  # faster identical versions of slow library transforms
    second_n: int | None = None  # pixel transforms of the 2nd global view (DINOv2-style asymmetry)
    args: dict | None = None  # per-transform keyword arguments over ``params``


class RedDinoAugmentation:
    """uint8 HWC image -> ``{"global": (2, 3, S, S), "local": (L, 3, s, s)}`` uint8 tensors."""

    def __init__(self, crops: CropSpec = CropSpec(), n_pixel_transforms: int | None = None,
                 pixel: PixelSpec = PixelSpec()):  # fmt: skip
        if n_pixel_transforms is not None:
            pixel = dataclasses.replace(pixel, n=n_pixel_transforms)
        for n in (pixel.n, pixel.second_n if pixel.second_n is not None else pixel.n):
            if not 0 <= n <= 33:
                raise ValueError(f"n_pixel_transforms must be in 0..33, got {n}")
        for name, value in (("pixel_transform_p", pixel.p), ("flip_p", pixel.flip_p)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"data.{name} must be in [0, 1], got {value}")
        self.crops, self.spec = crops, pixel
        self.pixel = self._pixel_pipeline(pixel, pixel.n)
        # the 2nd global view may be milder (DINOv2 blurs/solarizes its two views differently):
        # the student then learns to map a heavily recolored view onto a nearly clean one
        self.second_pixel = self.pixel if pixel.second_n in (None, pixel.n) \
            else self._pixel_pipeline(pixel, pixel.second_n)
        self.resize = A.Resize(crops.resize, crops.resize) if crops.resize else None
        self.global_crop = A.Compose(
            [A.RandomResizedCrop(size=(crops.global_size,) * 2, scale=crops.global_scale,
                                 ratio=crops.global_ratio)]
        )
        self.local_crop = A.Compose(
            [A.RandomResizedCrop(size=(crops.local_size,) * 2, scale=crops.local_scale)]
        )

    @staticmethod
    def _pixel_pipeline(pixel: PixelSpec, n: int) -> A.Compose:
        return A.Compose(
            [
                A.SomeOf(pixel_transforms(pixel.p, pixel.params, pixel.fast, pixel.args), n=n,
                         replace=False, p=1.0),
                A.HorizontalFlip(p=pixel.flip_p),
                A.VerticalFlip(p=pixel.flip_p),
                A.RandomRotate90(p=pixel.flip_p),
            ]
        )

    @staticmethod
    def _to_tensor(image: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))

    def _view(self, image: np.ndarray, crop: A.Compose, pixel: A.Compose | None = None):
        return (pixel or self.pixel)(image=crop(image=image)["image"])["image"]

    def __call__(self, image: np.ndarray, seed: int) -> dict[str, torch.Tensor]:
        """Two augmented global crops (+ local crops) of ``image``, reproducible by ``seed``."""
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
        seeds = np.random.SeedSequence(seed).generate_state(3)
        for transform, sub_seed in zip((self.pixel, self.global_crop, self.local_crop), seeds):
            transform.set_random_seed(int(sub_seed))
        if self.second_pixel is not self.pixel:
            self.second_pixel.set_random_seed(int(seeds[0]) + 1)
        if self.resize is not None and image.shape[:2] != (self.crops.resize,) * 2:
            image = self.resize(image=image)["image"]
        globals_ = [self._to_tensor(self._view(image, self.global_crop, pixel))
                    for pixel in (self.pixel, self.second_pixel)]
        locals_ = [
            self._to_tensor(self._view(image, self.local_crop))
            for _ in range(self.crops.local_number)
        ]
        size = self.crops.local_size
        return {
            "global": torch.stack(globals_),
            "local": torch.stack(locals_) if locals_ else torch.empty(0, 3, size, size,
                                                                       dtype=torch.uint8),
        }


def normalize(crops: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 (N, 3, H, W) crops -> ImageNet-normalized floats (float input passes unchanged)."""
    if crops.dtype != torch.uint8:
        return crops.to(dtype)
    mean = torch.tensor(IMAGENET_MEAN, device=crops.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(IMAGENET_STD, device=crops.device).view(1, 3, 1, 1) * 255
    return ((crops.float() - mean) / std).to(dtype)
