"""Shared test fixtures. Widget tests need a display: `make test` runs pytest under xvfb-run."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("QT_API", "pyqt6")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; loaders must fail clearly

TINY_BACKBONE_ARGS = {"embed_dim": 192, "depth": 6, "num_heads": 3}  # the bundled default's shape


@pytest.fixture(scope="session")
def tiny_backbone_dir(tmp_path_factory):
    """A random-init ViT/14 (192-d, 6 blocks, 224 px) exported in timm's folder format."""
    from napari_reddino.embed.backbones import build_random_backbone

    folder = tmp_path_factory.mktemp("backbones") / "tiny-vit14"
    return build_random_backbone(folder, architecture="vit_small_patch14_dinov2", img_size=224,
                                 seed=0, **TINY_BACKBONE_ARGS)


@pytest.fixture(scope="session")
def tiny_backbone(tiny_backbone_dir):
    """The tiny backbone loaded through the public path: load_backbone('local-dir:...')."""
    from napari_reddino.embed.backbones import load_backbone

    return load_backbone(f"local-dir:{tiny_backbone_dir}", device="cpu")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, tiny_backbone_dir):
    """A run folder written by the CLI (`embed` + `project`) on two small synthetic smears."""
    from tests._runs import write_small_run

    return write_small_run(tmp_path_factory.mktemp("small_run"), tiny_backbone_dir)


@pytest.fixture
def tiny_cellpose(monkeypatch, tmp_path):
    """A real cellpose 4 CPSAM network with a one-block SAM encoder, saved by its own method.

    CPSAM always builds its encoder through segment_anything's registry entry "vit_l" (300 M
    parameters); pointing that entry at segment_anything's own builder with a small config
    gives the same architecture in miniature, so weights are created locally in a second.
    """
    vit = pytest.importorskip("cellpose.vit")
    torch = pytest.importorskip("torch")
    from segment_anything.build_sam import _build_sam

    def one_block_encoder(checkpoint=None):
        return _build_sam(encoder_embed_dim=32, encoder_depth=1, encoder_num_heads=2,
                          encoder_global_attn_indexes=[0], checkpoint=None)

    monkeypatch.setitem(vit.sam_model_registry, "vit_l", one_block_encoder)
    torch.manual_seed(0)
    folder = tmp_path / "cellpose_models"
    folder.mkdir()
    net = vit.CPSAM()
    net.save_model(folder / "cpsam")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(folder))
    _cellpose_backend()._load_model.cache_clear()
    yield folder / "cpsam", net
    _cellpose_backend()._load_model.cache_clear()


def _cellpose_backend():
    from napari_reddino.segment import cellpose_backend

    return cellpose_backend
