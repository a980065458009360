"""RedDino's pixel transforms at the albumentations 1.x defaults it ran with, under 2.x.

The reddino configs hold, in ``data.transform_args``, the 2.x arguments that reproduce the 1.x
defaults 2.x changed; these tests measure each one's output against the 1.x values, and check that
every other transform's 2.x default still equals its 1.x default.
"""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import pytest

from napari_reddino.synthetic.smear import synthetic_smear
from training.configs import load_config
from training.data.augment import PIXEL_TRANSFORM_NAMES, pixel_transforms

# albumentations 1.4's defaults of the transforms whose 2.x default is the same, as 2.x stores them
V1_SAME = {
    "Blur": {"blur_limit": (3, 7)},  # Blur(blur_limit=7)
    "CLAHE": {"clip_limit": (1.0, 4.0), "tile_grid_size": (8, 8)},  # CLAHE(clip_limit=4.0, ...)
    "ChannelDropout": {"channel_drop_range": (1, 1), "fill": 0},  # (..., fill_value=0)
    "ChannelShuffle": {},
    "Defocus": {"radius": (3, 10), "alias_blur": (0.1, 0.5)},
    "Downscale": {"scale_range": (0.25, 0.25)},  # Downscale(scale_min=0.25, scale_max=0.25)
    "Emboss": {"alpha": (0.2, 0.5), "strength": (0.2, 0.7)},
    "Equalize": {"mode": "cv", "by_channels": True},
    "FancyPCA": {"alpha": 0.1},
    "GlassBlur": {"sigma": 0.7, "max_delta": 4, "iterations": 2},
    "HueSaturationValue": {"hue_shift_limit": (-20, 20), "sat_shift_limit": (-30, 30),
                           "val_shift_limit": (-20, 20)},
    "ISONoise": {"color_shift": (0.01, 0.05), "intensity": (0.1, 0.5)},
    "ImageCompression": {"quality_range": (99, 100)},  # (quality_lower=99, quality_upper=100)
    "InvertImg": {},
    "MedianBlur": {"blur_limit": (3, 7)},  # MedianBlur(blur_limit=7)
    "MotionBlur": {"blur_limit": (3, 7), "allow_shifted": True},  # MotionBlur(blur_limit=7)
    "MultiplicativeNoise": {"multiplier": (0.9, 1.1), "per_channel": False, "elementwise": False},
    "Posterize": {"num_bits": (4, 4)},
    "RandomBrightnessContrast": {"brightness_limit": (-0.2, 0.2), "contrast_limit": (-0.2, 0.2),
                                 "brightness_by_max": True},
    "RGBShift": {"r_shift_limit": (-20, 20), "g_shift_limit": (-20, 20),
                 "b_shift_limit": (-20, 20)},
    "RandomGamma": {"gamma_limit": (80, 120)},
    "RandomShadow": {"shadow_roi": (0, 0.5, 1, 1), "num_shadows_limit": (1, 2),
                     "shadow_dimension": 5},  # num_shadows_lower=1, num_shadows_upper=2
    "RandomSnow": {"snow_point_range": (0.1, 0.3), "brightness_coeff": 2.5},
    "RandomSunFlare": {"flare_roi": (0, 0, 1, 0.5), "angle_range": (0, 1), "src_radius": 400,
                       "num_flare_circles_range": (6, 10)},
    "RandomToneCurve": {"scale": 0.1},
    "RandomFog": {"fog_coef_range": (0.3, 1), "alpha_coef": 0.08},  # fog_coef_lower/upper
    "RingingOvershoot": {"blur_limit": (7, 15), "cutoff": (math.pi / 4, math.pi / 2)},
    "Sharpen": {"alpha": (0.2, 0.5), "lightness": (0.5, 1.0)},
    "Solarize": {"threshold_range": (0.5, 0.5)},  # Solarize(threshold=128): x 255 = 127.5
}


@pytest.fixture(scope="module")
def reddino() -> dict:
    """The configured transforms of vits14_reddino, by name, each acting always."""
    cfg = load_config("vits14_reddino")
    transforms = pixel_transforms(1.0, cfg.data.transform_params, args=cfg.data.transform_args)
    return {type(t).__name__.removeprefix("Fast"): t for t in transforms}


def _run(transform, image: np.ndarray, seed: int) -> np.ndarray:
    pipeline = A.Compose([transform])
    pipeline.set_random_seed(seed)
    return pipeline(image=image)["image"]


def test_every_reddino_config_gives_the_same_1x_arguments():
    args = [load_config(f"vit{size}14_reddino").data.transform_args for size in "sbl"]
    assert args[0] == args[1] == args[2]
    assert set(args[0]) | set(V1_SAME) == set(PIXEL_TRANSFORM_NAMES)


def test_the_other_transforms_keep_their_1x_defaults(reddino):
    for name, expected in V1_SAME.items():
        got = reddino[name].get_transform_init_args()
        for key, value in expected.items():
            assert got[key] == pytest.approx(value), (name, key)


def test_gauss_noise_std_is_1x_var_limit_10_50(reddino):
    gray = np.full((64, 64, 3), 128, np.uint8)
    stds = [(_run(reddino["GaussNoise"], gray, s).astype(float) - 128).std() for s in range(60)]
    low, high = math.sqrt(10), math.sqrt(50)  # 1.x: std = sqrt(U(10, 50)) gray levels
    # 2.x truncates the noise to whole gray levels toward 0: ~0.4 below the drawn std
    assert low - 0.6 < min(stds) < low + 1.0 and high - 1.0 < max(stds) < high + 0.3


def test_color_jitter_hue_shift_is_1x_at_most_a_fifth_of_the_circle(reddino):
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 200  # pure red: hue 0, so the output's hue is the shift
    shifts = []
    for seed in range(150):
        hue = cv2.cvtColor(_run(reddino["ColorJitter"], red, seed), cv2.COLOR_RGB2HSV_FULL)[..., 0]
        turn = (hue.astype(float).mean() / 256.0 + 0.5) % 1.0 - 0.5  # in (-0.5, 0.5] turns
        shifts.append(turn)
    assert max(map(abs, shifts)) < 0.2 + 0.02  # 1.x hue=0.2; 2.x's default reaches 0.5
    assert min(shifts) < -0.15 and max(shifts) > 0.15


def _effective_sigma(blurred: np.ndarray) -> float:
    profile = blurred.sum(axis=(0, 2)) if blurred.ndim == 3 else blurred.sum(axis=0)
    x = np.arange(profile.size) - profile.size // 2
    return float(np.sqrt((profile * x**2).sum() / profile.sum()))


def test_gaussian_blur_width_is_1x_sigma_from_kernel_size(reddino):
    impulse = np.zeros((21, 21, 3), np.float32)
    impulse[10, 10] = 1.0
    v1 = [_effective_sigma(cv2.GaussianBlur(impulse, (k, k), 0)) for k in (3, 5, 7)]
    got = [_effective_sigma(_run(reddino["GaussianBlur"], impulse, s)) for s in range(80)]
    assert min(v1) - 0.05 < min(got) and max(got) < max(v1) + 0.05  # 2.x's default: up to ~3
    assert max(got) - min(got) > 0.3


def test_rain_drops_are_1x_20_px_long(reddino):
    params = reddino["RandomRain"].get_params_dependent_on_data({"shape": (224, 224, 3)}, {})
    assert params["drop_length"] == 20  # 2.x's default: 224 // 8 = 28


def test_image_compression_is_1x_quality_99_to_100(reddino):
    tile = synthetic_smear(shape=(128, 128), seed=3).image
    for seed in range(5):
        out = _run(reddino["ImageCompression"], tile, seed).astype(float)
        psnr = 10 * math.log10(255**2 / max(((out - tile) ** 2).mean(), 1e-9))
        assert psnr > 40  # JPEG at quality 99-100: nearly lossless


def test_transform_args_refuses_an_unknown_transform():
    with pytest.raises(ValueError, match="unknown transforms"):
        pixel_transforms(args={"GaussNoize": {"std_range": [0.1, 0.2]}})
