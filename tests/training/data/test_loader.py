"""The training stream's synthetic sources: smear tiles, or crops centered on one cell."""

from __future__ import annotations

import numpy as np
import pytest

from training.data.augment import CropSpec
from training.data.loader import MaskSpec, SmearCropStream


def _stream(mode: str, **kw) -> SmearCropStream:
    return SmearCropStream([], batch_size=4, crops=CropSpec(global_size=56), masks=MaskSpec(4),
                           synthetic=True, synthetic_shape=256, synthetic_mode=mode,
                           tile_size=64, **kw)


def test_cell_mode_centers_a_stained_cell_and_tiles_mostly_do_not():
    """A cell crop holds a stained cell in its middle: darker there than at its corners."""
    def darker_middle(stream):
        hits = []
        for index in range(40):
            image = stream._image(index, np.random.default_rng(index)).astype(float).mean(-1)
            assert image.shape == (64, 64)
            corners = np.concatenate([image[:6, :6], image[:6, -6:], image[-6:, :6],
                                      image[-6:, -6:]]).mean()
            hits.append(image[28:36, 28:36].mean() < corners - 10)
        return np.mean(hits)

    assert darker_middle(_stream("cells")) >= 0.9
    assert darker_middle(_stream("tiles")) < 0.7
    batch = _stream("cells").batch(0)
    assert batch["global_crops"].shape == (8, 3, 56, 56)


def test_unknown_synthetic_mode_is_refused():
    with pytest.raises(ValueError, match="synthetic_mode must be one of"):
        _stream("nuclei")
