"""Color models other than RGB (#23 B3): a CMYK JPEG read as RGBA found 1 cell instead of 13."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_reddino.io.smear_files import PipelineInputError, read_image
from napari_reddino.segment.dispatch import segment
from napari_reddino.synthetic.smear import synthetic_dataset


@pytest.fixture(scope="module")
def smear() -> np.ndarray:
    [one] = synthetic_dataset(n_subjects=1, images_per_subject=1, shape=(256, 256), seed=4)
    return np.asarray(one.image, dtype=np.uint8)


def _close(a: np.ndarray, b: np.ndarray, tolerance: float) -> bool:
    return float(np.abs(a.astype(float) - b.astype(float)).mean()) < tolerance


def test_cmyk_jpeg_reads_as_its_rgb_colors_and_segments_alike(smear, tmp_path):
    Image.fromarray(smear).save(tmp_path / "rgb.jpg", quality=95)
    Image.fromarray(smear).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    rgb, cmyk = read_image(tmp_path / "rgb.jpg"), read_image(tmp_path / "cmyk.jpg")
    assert cmyk.shape == smear.shape and _close(cmyk, smear, 6.0)
    n_rgb = int(segment(rgb).labels.max())
    n_cmyk = int(segment(cmyk).labels.max())
    assert n_rgb > 3 and abs(n_cmyk - n_rgb) <= max(1, n_rgb // 10)


def test_cmyk_tiff_is_converted(smear, tmp_path):
    cmyk = np.asarray(Image.fromarray(smear).convert("CMYK"))
    tifffile.imwrite(tmp_path / "cmyk.tif", cmyk, photometric="separated")
    assert _close(read_image(tmp_path / "cmyk.tif"), smear, 3.0)


@pytest.mark.parametrize("mode", ["P", "LA", "I;16", "L"])
def test_palette_gray_alpha_and_16_bit_pngs(smear, tmp_path, mode):
    image = Image.fromarray(smear)
    gray = np.asarray(image.convert("L"))
    expected = gray[..., None].repeat(3, 2)
    if mode == "I;16":  # 16-bit data is scaled by its maximum, as validate_image documents
        image = Image.fromarray(gray.astype(np.uint16) * 257)
        assert image.mode.startswith("I;16")
        expected = (gray.astype(float) * 255 / gray.max()).astype(np.uint8)[..., None].repeat(3, 2)
    elif mode == "P":
        image, expected = image.quantize(256), smear
        assert image.mode == "P"
    else:
        image = image.convert(mode)
    image.save(tmp_path / "x.png")
    out = read_image(tmp_path / "x.png")
    assert out.shape == smear.shape and out.dtype == np.uint8
    assert _close(out, expected, 6.0)


def test_unsupported_mode_is_refused_by_name(tmp_path, monkeypatch):
    Image.new("RGB", (32, 32)).save(tmp_path / "odd.png")
    monkeypatch.setattr(Image, "open", lambda *args, **kwargs: _OddMode())
    with pytest.raises(PipelineInputError, match=r"odd\.png: unsupported image mode 'CMYKX'"):
        read_image(tmp_path / "odd.png")


class _OddMode:
    """A decoded image in a mode with no RGB meaning the reader knows."""

    mode = "CMYKX"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def load(self):
        return None
