"""RedDino augmentation: the 33 pixel transforms, DINO crops, and per-sample reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_reddino.synthetic import synthetic_smear
from training.data.augment import CropSpec, RedDinoAugmentation, pixel_transforms

REDDINO_33 = {
    "Blur", "CLAHE", "ChannelShuffle", "ChannelDropout", "ColorJitter", "Defocus", "Downscale",
    "Emboss", "Equalize", "FancyPCA", "GaussNoise", "GaussianBlur", "GlassBlur",
    "HueSaturationValue", "ISONoise", "ImageCompression", "InvertImg", "MedianBlur", "MotionBlur",
    "MultiplicativeNoise", "Posterize", "RandomBrightnessContrast", "RGBShift", "RandomGamma",
    "RandomRain", "RandomShadow", "RandomSnow", "RandomSunFlare", "RandomToneCurve", "RandomFog",
    "RingingOvershoot", "Sharpen", "Solarize",
}  # fmt: skip


@pytest.fixture(scope="module")
def smear_tile() -> np.ndarray:
    return synthetic_smear(shape=(160, 160), seed=4).image


def test_the_33_pixel_transforms_of_reddino(smear_tile):
    transforms = pixel_transforms()
    assert {type(t).__name__ for t in transforms} == REDDINO_33
    assert len(transforms) == 33
    changed = 0
    for transform in transforms:
        out = transform(image=smear_tile)["image"]
        assert out.shape == smear_tile.shape and out.dtype == np.uint8
        changed += not np.array_equal(out, smear_tile)
    assert changed >= 31  # a channel shuffle may draw the identity; nearly all must act


def test_crops_shapes_normalisation_and_seed(smear_tile):
    augment = RedDinoAugmentation(CropSpec(global_size=112, local_number=3, local_size=42))
    out = augment(smear_tile, seed=7)
    assert out["global"].shape == (2, 3, 112, 112)
    assert out["local"].shape == (3, 3, 42, 42)
    assert out["global"].dtype == torch.float32
    assert not torch.equal(out["global"][0], out["global"][1])  # two different views
    again = augment(smear_tile, seed=7)
    assert torch.equal(out["global"], again["global"]) and torch.equal(out["local"], again["local"])
    assert not torch.equal(out["global"], augment(smear_tile, seed=8)["global"])


def test_no_pixel_transforms_is_plain_normalised_crop(smear_tile):
    augment = RedDinoAugmentation(CropSpec(global_size=160, global_scale=(1.0, 1.0)), 0)
    view = augment(smear_tile, seed=0)["global"][0]
    # full-scale crop of a square tile: the tile itself (up to flips / 90° turns), normalised
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixels = (view * std + mean) * 255
    expected = torch.from_numpy(smear_tile).permute(2, 0, 1).float()
    candidates = [torch.rot90(e, k, (1, 2)) for e in (expected, expected.flip(2)) for k in range(4)]
    assert min(float((pixels - c).abs().max()) for c in candidates) < 0.01


def test_bad_input_is_a_clear_error():
    augment = RedDinoAugmentation()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        augment(np.zeros((32, 32), np.uint8), seed=0)
    with pytest.raises(ValueError, match=r"0\.\.33"):
        RedDinoAugmentation(n_pixel_transforms=40)
