"""Smear -> training patches: background tiles skipped, cell crops centered on their cell."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest

from napari_reddino.synthetic.smear import synthetic_smear
from training.data.patches import as_rgb_uint8, cell_crops, extract_patches, tile_patches

SHARED = Path(__file__).resolve().parents[4] / "shared" / "data"


@pytest.fixture(scope="module")
def half_empty_smear():
    """A synthetic smear whose right half is replaced by its own bare-glass background."""
    smear = synthetic_smear(shape=(256, 512), seed=2)
    image, labels = smear.image.copy(), smear.labels.copy()
    background = np.median(image[labels == 0], axis=0).astype(np.uint8)
    image[:, 256:] = background
    labels[:, 256:] = 0
    return image, labels


def test_background_tiles_are_skipped(half_empty_smear):
    image, labels = half_empty_smear
    kept = list(tile_patches(image, 64, min_foreground=0.05))
    positions = {(y, x) for y, x, _ in kept}
    assert all(x < 256 for _, x in positions)  # nothing from the empty half
    with_cells = {(y, x) for y in range(0, 256, 64) for x in range(0, 256, 64)
                  if (labels[y:y + 64, x:x + 64] > 0).mean() >= 0.15}  # fmt: skip
    assert with_cells <= positions
    for y, x, tile in kept:
        assert tile.shape == (64, 64, 3)
        np.testing.assert_array_equal(tile, image[y:y + 64, x:x + 64])


def test_cell_crops_are_centered_on_each_cell(half_empty_smear):
    image, labels = half_empty_smear
    crops = list(cell_crops(image, labels, size=48))
    assert {label for label, _ in crops} == set(np.unique(labels[labels > 0]).tolist())
    for label, crop in crops:
        assert crop.shape == (48, 48, 3)
        ys, xs = np.nonzero(labels == label)
        cy, cx = round(ys.mean()), round(xs.mean())
        np.testing.assert_array_equal(crop[24, 24], image[cy, cx])
    with pytest.raises(ValueError, match="do not match"):
        next(cell_crops(image, labels[:10]))


def test_extract_patches_from_a_real_smear(tmp_path):
    source = SHARED / "bccd" / "JPEGImages"
    if not source.is_dir():
        pytest.skip("shared real smears not present")
    one = sorted(source.iterdir())[0]
    count = extract_patches([one], tmp_path / "out", size=128)
    written = sorted((tmp_path / "out").glob("*.png"))
    assert count == len(written) >= 4  # a crowded 640x480 smear: most of its 15 tiles hold cells
    assert all(iio.imread(p).shape == (128, 128, 3) for p in written)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        extract_patches([tmp_path / "empty"], tmp_path / "none")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        extract_patches([tmp_path / "missing"], tmp_path / "none")


def test_any_image_layout_becomes_rgb_uint8():
    gray16 = np.full((8, 8), 65535, np.uint16)
    assert as_rgb_uint8(gray16).shape == (8, 8, 3) and as_rgb_uint8(gray16).max() == 255
    rgba_float = np.full((8, 8, 4), 0.5)
    assert as_rgb_uint8(rgba_float)[0, 0].tolist() == [128, 128, 128]
    with pytest.raises(ValueError, match="gray, RGB or RGBA"):
        as_rgb_uint8(np.zeros((2, 8, 8, 3)))


def test_cell_crops_of_a_segmented_smear_match_the_plugins_cls_crop(tmp_path):
    """`patches --cells`: one crop per segmented cell, as the plugin's cls_crop would cut it."""
    from scipy import ndimage

    from napari_reddino.embed.per_cell import crop_square
    from napari_reddino.segment.dispatch import classical_segment
    from training.__main__ import main
    from training.data.patches import extract_cell_crops

    smear = synthetic_smear(shape=(256, 256), seed=3)
    iio.imwrite(tmp_path / "smear.png", smear.image)
    assert main(["patches", str(tmp_path / "smear.png"), "--out", str(tmp_path / "crops"),
                 "--cells", "--size", "64", "--margin", "1.5"]) == 0
    written = sorted((tmp_path / "crops").glob("*.png"))
    labels = classical_segment(smear.image)
    boxes = [b for b in ndimage.find_objects(labels) if b is not None]
    assert len(written) == len(boxes) >= 10
    first = iio.imread(written[0])
    np.testing.assert_array_equal(first, crop_square(smear.image, boxes[0], 1.5, 64))
    assert main(["patches", str(tmp_path / "smear.png"), "--out", str(tmp_path / "shards"),
                 "--cells", "--size", "64", "--margin", "1.5", "--format", "shards"]) == 0
    from training.data.shards import PatchShards, load_manifest

    manifest, shards = load_manifest(tmp_path / "shards"), PatchShards([tmp_path / "shards"])
    assert manifest["kind"] == "cells" and len(shards) == len(written)
    assert manifest["sources"][0]["keys"] == [int(p.stem[-4:]) for p in written]  # cell labels
    for index, path in enumerate(written):
        np.testing.assert_array_equal(shards[index], iio.imread(path))
    with pytest.raises(ValueError, match="margin must be >= 1"):
        extract_cell_crops([tmp_path / "smear.png"], tmp_path / "bad", margin=0.5)


def _painted_cell(mask: np.ndarray, pale_center: bool) -> np.ndarray:
    """A pink cell on bright glass; optionally with a pale center (central pallor)."""
    from scipy import ndimage

    image = np.full((*mask.shape, 3), 230, np.uint8)
    image[mask] = (180, 110, 140)
    if pale_center:
        depth = ndimage.distance_transform_edt(mask)
        image[depth > 0.6 * depth.max()] = (215, 190, 200)
    return image


def test_bank_targets_are_the_plugins_morphology_of_each_cell():
    """One feature definition: the bank stores the plugin's morphology numbers per cell."""
    from skimage.draw import disk, ellipse

    from napari_reddino.morphology.features import FEATURE_NAMES
    from training.data.cell_bank import smear_cells, target_columns

    index = {name: i for i, name in enumerate(FEATURE_NAMES)}
    mask = np.zeros((100, 300), bool)
    solid, pale, long = mask.copy(), mask.copy(), mask.copy()
    solid[disk((50, 50), 15)] = True
    pale[disk((50, 150), 15)] = True
    long[ellipse(50, 250, 8, 24)] = True
    image = _painted_cell(solid | long, False)
    image[pale] = _painted_cell(pale, True)[pale]
    crops, features = smear_cells(image, 64)
    assert crops.shape == (3, 64, 64, 3) and features.shape == (3, len(FEATURE_NAMES))
    solid_f, pale_f, long_f = features  # labels run left to right
    assert solid_f[index["area"]] == pytest.approx(np.pi * 15**2, rel=0.05)
    assert solid_f[index["elongation"]] == pytest.approx(1.0, abs=0.05)
    assert long_f[index["elongation"]] == pytest.approx(3.0, rel=0.1)
    assert pale_f[index["pallor_rim_ratio"]] < 0.6 < solid_f[index["pallor_rim_ratio"]]
    np.testing.assert_array_equal(crops[0], image[18:82, 18:82])  # centered on the cell
    kept = target_columns(np.asarray(FEATURE_NAMES), ["color and stain", "area"])
    assert index["area"] not in kept and index["od_mean"] not in kept
    assert index["elongation"] in kept and len(kept) == len(FEATURE_NAMES) - 15


def test_cell_bank_streams_views_with_their_targets(tmp_path):
    from napari_reddino.morphology.features import FEATURE_NAMES
    from training.configs import load_config
    from training.data.cell_bank import bank_stream_from_config, build_cell_bank, n_bank_targets

    smear = synthetic_smear((256, 256), seed=3)
    folder = tmp_path / "smears"
    folder.mkdir()
    iio.imwrite(folder / "a.png", smear.image)
    count = build_cell_bank([(str(folder), 1.0)], tmp_path / "bank.npz", size=64, log=lambda _: 0)
    with np.load(tmp_path / "bank.npz") as bank:
        assert bank["crops"].shape == (count, 64, 64, 3) and count >= 5
        assert bank["features"].shape == (count, len(FEATURE_NAMES))
    assert n_bank_targets([tmp_path / "bank.npz"]) == len(FEATURE_NAMES)
    assert n_bank_targets([tmp_path / "bank.npz"], ["color and stain"]) == len(FEATURE_NAMES) - 14
    cfg = load_config("tiny_cpu", [f"data.cell_bank=[{tmp_path / 'bank.npz'}]",
                                   "data.batch_size_per_gpu=3"])
    stream = bank_stream_from_config(cfg.data, cfg.mask, patch_size=cfg.model.patch_size,
                                     seed=0, rank=0, world_size=1, start_step=0)
    first, again = stream.batch(2), stream.batch(2)
    assert first["morph_targets"].shape == (3, len(FEATURE_NAMES))
    assert first["global_crops"].shape[0] == 6
    assert (first["global_crops"] == again["global_crops"]).all()  # a pure function of the step
    assert (first["morph_targets"] == again["morph_targets"]).all()
