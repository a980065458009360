"""RedDino augmentation: the 33 pixel transforms, DINO crops, and per-sample reproducibility."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from napari_reddino.synthetic.smear import synthetic_smear
from training.data.augment import (
    PIXEL_TRANSFORM_NAMES,
    CropSpec,
    PixelSpec,
    RedDinoAugmentation,
    normalize,
    pixel_transforms,
)
from training.data.fast_transforms import FastRandomFog

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
    assert {type(t).__name__.removeprefix("Fast") for t in transforms} == REDDINO_33
    assert len(transforms) == 33
    changed = 0
    for transform in transforms:
        out = transform(image=smear_tile)["image"]
        assert out.shape == smear_tile.shape and out.dtype == np.uint8
        changed += not np.array_equal(out, smear_tile)
    assert changed >= 31  # a channel shuffle may draw the identity; nearly all must act


def test_crops_shapes_normalization_and_seed(smear_tile):
    augment = RedDinoAugmentation(CropSpec(global_size=112, local_number=3, local_size=42))
    out = augment(smear_tile, seed=7)
    assert out["global"].shape == (2, 3, 112, 112)
    assert out["local"].shape == (3, 3, 42, 42)
    assert out["global"].dtype == torch.uint8 and out["local"].dtype == torch.uint8
    assert not torch.equal(out["global"][0], out["global"][1])  # two different views
    again = augment(smear_tile, seed=7)
    assert torch.equal(out["global"], again["global"]) and torch.equal(out["local"], again["local"])
    assert not torch.equal(out["global"], augment(smear_tile, seed=8)["global"])


def test_no_pixel_transforms_is_plain_normalized_crop(smear_tile):
    augment = RedDinoAugmentation(CropSpec(global_size=160, global_scale=(1.0, 1.0)), 0)
    raw = augment(smear_tile, seed=0)["global"]
    assert raw.dtype == torch.uint8  # crops stay uint8 until the training device
    view = normalize(raw)[0]
    # full-scale crop of a square tile: the tile itself (up to flips / 90° turns), normalized
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    pixels = (view * std + mean) * 255
    expected = torch.from_numpy(smear_tile).permute(2, 0, 1).float()
    candidates = [torch.rot90(e, k, (1, 2)) for e in (expected, expected.flip(2)) for k in range(4)]
    assert min(float((pixels - c).abs().max()) for c in candidates) < 0.01


def test_milder_second_view(smear_tile):
    """``second_n=0``: view 2 is the plain crop, view 1 keeps its pixel transforms."""
    crops = CropSpec(global_size=112, global_scale=(1.0, 1.0))
    both = RedDinoAugmentation(crops, pixel=PixelSpec(n=4, p=1.0, flip_p=0.0))
    mild = RedDinoAugmentation(crops, pixel=PixelSpec(n=4, p=1.0, flip_p=0.0, second_n=0))
    plain = RedDinoAugmentation(crops, pixel=PixelSpec(n=0, flip_p=0.0))
    first, clean = mild(smear_tile, seed=5)["global"], plain(smear_tile, seed=5)["global"][1]
    assert torch.equal(first[1], clean)
    assert torch.equal(first[0], both(smear_tile, seed=5)["global"][0])  # view 1 unchanged
    assert not torch.equal(first[0], clean)
    with pytest.raises(ValueError, match=r"0\.\.33"):
        RedDinoAugmentation(crops, pixel=PixelSpec(n=4, second_n=40))


def test_bad_input_is_a_clear_error():
    augment = RedDinoAugmentation()
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        augment(np.zeros((32, 32), np.uint8), seed=0)
    with pytest.raises(ValueError, match=r"0\.\.33"):
        RedDinoAugmentation(n_pixel_transforms=40)


def test_reddino_probabilities_and_library_defaults():
    """RedDino: every drawn transform and each flip / 90-degree turn at p = 0.85, default params."""
    transforms = pixel_transforms(p=0.85, params="library")
    assert {t.p for t in transforms} == {0.85}
    blur = next(t for t in transforms if type(t).__name__ == "Blur")
    assert tuple(blur.blur_limit) == tuple(A.Blur().blur_limit)  # the library's own default
    augment = RedDinoAugmentation(pixel=PixelSpec(n=4, p=0.85, flip_p=0.85, params="library"))
    some_of, *flips = augment.pixel.transforms
    assert some_of.n == 4 and [type(f).__name__ for f in flips] == [
        "HorizontalFlip", "VerticalFlip", "RandomRotate90"]
    assert {f.p for f in flips} == {0.85}
    with pytest.raises(ValueError, match="flip_p"):
        RedDinoAugmentation(pixel=PixelSpec(flip_p=1.5))
    with pytest.raises(ValueError, match="transform_params"):
        pixel_transforms(params="mine")


def test_fast_fog_draws_and_paints_like_the_library(smear_tile):
    for seed in range(12):
        image = smear_tile if seed % 2 else np.ascontiguousarray(smear_tile[:70, :98])
        library, fast = A.RandomFog(p=1.0), FastRandomFog(p=1.0)
        library.set_random_seed(seed)
        fast.set_random_seed(seed)
        assert np.array_equal(library(image=image)["image"], fast(image=image)["image"]), seed


def test_pipeline_equals_the_plain_albumentations_pipeline(smear_tile):
    """The fast pipeline is the library pipeline: same draws, same pixels, for many seeds."""
    spec = PixelSpec(n=4, p=0.85, flip_p=0.85, params="library")
    augment = RedDinoAugmentation(CropSpec(global_size=112, resize=160), pixel=spec)
    reference = A.Compose([
        A.SomeOf([getattr(A, name)(p=0.85) for name in PIXEL_TRANSFORM_NAMES], n=4,
                 replace=False, p=1.0),
        A.HorizontalFlip(p=0.85), A.VerticalFlip(p=0.85), A.RandomRotate90(p=0.85),
    ])  # fmt: skip
    crop = A.Compose([A.RandomResizedCrop(size=(112, 112), scale=(0.32, 1.0))])
    big = np.ascontiguousarray(np.repeat(np.repeat(smear_tile, 2, 0), 2, 1))  # 320 px: resized
    for seed in range(16):
        out = augment(big, seed=seed)["global"]
        seeds = np.random.SeedSequence(seed).generate_state(3)
        reference.set_random_seed(int(seeds[0]))
        crop.set_random_seed(int(seeds[1]))
        image = A.Resize(160, 160)(image=big)["image"]
        for view in range(2):
            expected = reference(image=crop(image=image)["image"])["image"]
            assert torch.equal(out[view], torch.from_numpy(expected).permute(2, 0, 1)), seed
