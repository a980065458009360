"""The one per-smear core: the pipeline is iter_embed_smear plus files; pixel sizes and the
backbone cache are shared."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino import names as nm
from napari_reddino.morphology.features import COLUMN_PREFIX
from napari_reddino.runs import embed_smear as core
from napari_reddino.runs import pipeline
from napari_reddino.synthetic import smear as synthetic


@pytest.fixture(scope="module")
def backbone(tiny_backbone_dir):
    return core.cached_backbone(f"local-dir:{tiny_backbone_dir}", "cpu")


@pytest.fixture(scope="module")
def smear():
    return synthetic.synthetic_smear((168, 196), seed=11, name="core")


def test_the_pipeline_and_the_core_agree_and_the_pixel_size_reaches_morphology(smear, backbone):
    result = pipeline.process_smear(smear.image, backbone, image_name="core.png", subject="s1",
                                    pooling="patch_mean", pixel_size=0.5)
    assert len(result.table) >= 5
    given = core.embed_smear(smear.image, result.labels, backbone, pooling="patch_mean",
                             keep_grid=False, image_name="core.png")
    assert given.table is None and given.grid is not None  # patch_mean pooled from a grid
    np.testing.assert_array_equal(given.embeddings.label, result.embeddings.label)
    np.testing.assert_allclose(given.embeddings.vectors, result.embeddings.vectors, atol=1e-6)
    np.testing.assert_allclose(given.grid, result.grid, atol=1e-6)
    area = COLUMN_PREFIX + "area"
    in_pixels = given.morphology.set_index("label")[area]
    in_microns = result.table.set_index("label")[area]
    np.testing.assert_allclose(in_microns, in_pixels.loc[in_microns.index] * 0.25)
    rows = result.table[nm.EMBEDDING_ROW].to_numpy()
    np.testing.assert_array_equal(result.embeddings.label[rows], result.table["label"])


def test_without_labels_or_a_method_only_the_overlay_is_made(smear, backbone):
    out = core.embed_smear(smear.image, None, backbone, method=None, keep_grid=False,
                           overlay_subdivide=1, overlay_cells_only=False)
    assert out.labels is None and out.embeddings is None and out.morphology is None
    assert out.grid is None and out.table is None
    rgb, scale, _translate = out.overlay
    assert rgb.shape == (12, 14, 3) and scale == (14.0, 14.0) and out.backbone == backbone.name


def test_a_pixel_size_enters_the_fingerprint_only_when_set():
    plain = pipeline.PipelineConfig(backbone="fake")
    assert "pixel_size" not in plain.fingerprint()  # folders finished before stay finished
    assert pipeline.PipelineConfig(backbone="fake", pixel_size=0.1).fingerprint()[
        "pixel_size"] == 0.1


def test_one_backbone_cache_and_checkpoints_are_converted_once(tmp_path, monkeypatch):
    assert pipeline.cached_backbone is core.cached_backbone
    assert core.checkpoint_source("reddino-tiny") == "reddino-tiny"
    calls = []

    def convert(checkpoint, folder):
        calls.append(folder)
        folder.mkdir()
        (folder / "config.json").write_text("{}")

    monkeypatch.setattr("napari_reddino.embed.backbones.convert_dinov2_checkpoint", convert)
    checkpoint = tmp_path / "model.pth"
    assert core.checkpoint_source(str(checkpoint)) == f"local-dir:{tmp_path / 'model-timm'}"
    assert core.checkpoint_source(str(checkpoint)) == f"local-dir:{tmp_path / 'model-timm'}"
    assert calls == [tmp_path / "model-timm"]
