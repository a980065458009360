"""Backbone registry: each family loads through timm from local files; offline errors are clear."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.layers import resample_abs_pos_embed
from timm.models import save_for_hf

from napari_reddino.embed import backbones
from napari_reddino.embed.backbones import (
    BACKBONES,
    DEFAULT_BACKBONE,
    WeightsNotFoundError,
    convert_dinov2_checkpoint,
    export_backbone,
    load_backbone,
    resolve_device,
)

RNG = np.random.default_rng(0)
TILES = RNG.integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_cache_entry(cache_dir, repo_id: str):
    """The snapshot folder huggingface_hub reads for ``repo_id`` (files placed there are cached)."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(COMMIT)
    snapshot = repo_dir / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    return snapshot


def source_model(architecture: str, img_size: int) -> torch.nn.Module:
    torch.manual_seed(1)
    model = timm.create_model(architecture, pretrained=False, num_classes=0, img_size=img_size)
    return model.eval()


def to_input(backbone, tiles):
    return backbone.preprocess(tiles).contiguous()


@pytest.mark.parametrize(("name", "repo_id"), [
    ("reddino-small", "Snarcy/RedDino-small"),
    ("dinobloom-small", "1aurent/vit_small_patch14_224.dinobloom"),
])
def test_hub_families_load_from_the_hf_cache(tmp_path, name, repo_id):
    """A timm hub folder (config.json + model.safetensors) in the HF cache loads offline."""
    source = source_model("vit_small_patch14_dinov2", 224)
    save_for_hf(source, str(hub_cache_entry(tmp_path, repo_id)), safe_serialization=True)

    backbone = load_backbone(name, device="cpu", dtype="float32", cache_dir=tmp_path)

    assert backbone.model.pretrained_cfg["architecture"] == "vit_small_patch14_dinov2"
    assert (backbone.img_size, backbone.patch_size, backbone.embed_dim) == (224, 14, 384)
    assert backbone.mean == pytest.approx(backbones.IMAGENET_MEAN)
    cls, patches = backbone.forward(TILES)
    with torch.inference_mode():
        expected = source.forward_features(to_input(backbone, TILES))
    assert cls.shape == (2, 384) and patches.shape == (2, 16, 16, 384)
    np.testing.assert_allclose(cls, expected[:, 0].numpy(), atol=1e-4)
    np.testing.assert_allclose(patches.reshape(2, 256, 384), expected[:, 1:].numpy(), atol=1e-4)


@pytest.mark.parametrize(("name", "architecture", "prefix_tokens"), [
    ("dinov2-small", "vit_small_patch14_dinov2", 1),
    ("vit_small_patch14_reg4_dinov2.lvd142m", "vit_small_patch14_reg4_dinov2", 5),
])
def test_timm_named_weights_load_at_224(tmp_path, name, architecture, prefix_tokens):
    """DINOv2 timm weights are stored at 518 px; the registry loads them at 224 (pos-embed
    resampled) and strips CLS + register tokens from the patch grid."""
    source = source_model(architecture, 518)
    repo_id = f"timm/{architecture}.lvd142m"
    save_file(source.state_dict(), str(hub_cache_entry(tmp_path, repo_id) / "model.safetensors"))

    backbone = load_backbone(name, device="cpu", dtype="float32", cache_dir=tmp_path)

    assert backbone.model.pretrained_cfg["architecture"] == architecture
    assert backbone.img_size == 224 and backbone.model.num_prefix_tokens == prefix_tokens
    pos = backbone.model.pos_embed
    expected_pos = resample_abs_pos_embed(
        source.pos_embed, (16, 16), num_prefix_tokens=0 if prefix_tokens > 1 else 1)
    torch.testing.assert_close(pos, expected_pos)
    cls, patches = backbone.forward(TILES)
    with torch.inference_mode():
        tokens = backbone.model.forward_features(to_input(backbone, TILES))
    np.testing.assert_allclose(patches.reshape(2, 256, -1), tokens[:, prefix_tokens:], atol=1e-5)
    np.testing.assert_allclose(cls, tokens[:, 0], atol=1e-5)


def test_local_dir_export_round_trip_keeps_config(tmp_path, tiny_backbone_dir, tiny_backbone):
    config = json.loads((tiny_backbone_dir / "config.json").read_text())
    assert config["architecture"] == "vit_small_patch14_dinov2"
    assert config["model_args"]["embed_dim"] == 192 and config["model_args"]["depth"] == 6
    assert config["pretrained_cfg"]["input_size"] == [3, 224, 224]
    assert (tiny_backbone_dir / "model.safetensors").is_file()
    assert (tiny_backbone.embed_dim, tiny_backbone.grid_size) == (192, 16)

    mean, std = (0.6, 0.5, 0.4), (0.2, 0.25, 0.3)
    folder = export_backbone(tiny_backbone.model, tmp_path / "custom", img_size=224,
                             mean=mean, std=std)
    reloaded = load_backbone(str(folder), device="cpu")  # a plain folder path works too
    assert reloaded.mean == pytest.approx(mean) and reloaded.std == pytest.approx(std)
    flat = np.full((1, 224, 224, 3), 128, np.uint8)
    expected = (128 / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(reloaded.preprocess(flat)[0, :, 0, 0], expected, atol=1e-5)


def test_offline_missing_weights_name_the_model_cache_and_local_dir(tmp_path):
    started = time.perf_counter()
    with pytest.raises(WeightsNotFoundError) as info:
        load_backbone("reddino-base", cache_dir=tmp_path)
    message = str(info.value)
    assert "Snarcy/RedDino-base" in message and str(tmp_path) in message
    assert "local-dir:" in message and "HF_HUB_OFFLINE" in message
    assert time.perf_counter() - started < 5


def test_unreachable_hub_fails_fast_instead_of_retrying(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(backbones.hf_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(backbones.hf_constants, "ENDPOINT", "http://127.0.0.1:9")
    started = time.perf_counter()
    with pytest.raises(WeightsNotFoundError, match="unreachable"):
        load_backbone("dinov2-small", cache_dir=tmp_path)
    assert time.perf_counter() - started < 10


def test_bundled_default_missing_says_not_bundled(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    monkeypatch.setattr(backbones, "BUNDLED_WEIGHTS_DIR", weights)
    spec = BACKBONES[DEFAULT_BACKBONE]
    monkeypatch.setitem(BACKBONES, DEFAULT_BACKBONE, backbones.BackboneSpec(
        f"local-dir:{weights / 'reddino-tiny'}", spec.img_size))
    with pytest.raises(WeightsNotFoundError, match="not bundled yet"):
        load_backbone()


def test_bundled_default_is_the_tiny_vit14_in_the_package():
    spec = BACKBONES[DEFAULT_BACKBONE]
    assert DEFAULT_BACKBONE == "reddino-tiny"
    assert spec.source == f"local-dir:{backbones.BUNDLED_WEIGHTS_DIR / 'reddino-tiny'}"
    assert spec.patch_size == 14 and spec.pooling == "cls"


@pytest.mark.parametrize("chunked", [False, True])
def test_dinov2_pth_converter_round_trip(tmp_path, tiny_backbone, chunked):
    """An official DINOv2/DinoBloom training checkpoint (teacher, backbone. prefix, heads,
    mask token, optionally chunked blocks) converts into an identical timm backbone."""
    state = tiny_backbone.model.state_dict()
    teacher = {}
    for key, value in state.items():
        if chunked and key.startswith("blocks."):
            index = int(key.split(".")[1])
            key = f"blocks.{index // 3}.{key[len('blocks.'):]}"
        teacher[f"backbone.{key}"] = value.clone()
    teacher["backbone.mask_token"] = torch.zeros(1, 192)
    teacher["dino_head.last_layer.weight_g"] = torch.ones(8, 1)
    checkpoint = tmp_path / "dinobloom-s.pth"
    torch.save({"teacher": teacher, "iteration": 1000}, checkpoint)

    folder = convert_dinov2_checkpoint(checkpoint, tmp_path / "converted")
    converted = load_backbone(f"local-dir:{folder}", device="cpu")

    assert json.loads((folder / "config.json").read_text())["model_args"]["depth"] == 6
    expected_cls, expected_patches = tiny_backbone.forward(TILES)
    cls, patches = converted.forward(TILES)
    np.testing.assert_allclose(cls, expected_cls, atol=1e-5)
    np.testing.assert_allclose(patches, expected_patches, atol=1e-5)


def test_converter_rejects_a_checkpoint_without_a_vit(tmp_path):
    checkpoint = tmp_path / "resnet.pth"
    torch.save({"model": {"conv1.weight": torch.zeros(4, 3, 7, 7)}}, checkpoint)
    with pytest.raises(ValueError, match="not a DINOv2-format ViT"):
        convert_dinov2_checkpoint(checkpoint, tmp_path / "out")
    with pytest.raises(ValueError, match="raw checkpoint"):
        load_backbone(str(checkpoint))


def test_bad_names_and_inputs_give_clear_errors(tiny_backbone):
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("reddino-huge")
    with pytest.raises(ValueError, match="uint8"):
        tiny_backbone.forward(np.zeros((1, 224, 224, 3), np.float32))
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else resolve_device("auto").type
    assert resolve_device("auto").type == expected


def test_forward_resizes_other_sizes_and_stays_deterministic(tiny_backbone):
    small = RNG.integers(0, 256, (3, 100, 100, 3), dtype=np.uint8)
    cls_a, patches = tiny_backbone.forward(small)
    cls_b, _ = tiny_backbone.forward(small[::-1].copy())
    assert patches.shape == (3, 16, 16, 192) and cls_a.dtype == np.float32
    np.testing.assert_allclose(cls_a, cls_b[::-1], atol=1e-5)
    assert tiny_backbone.model.training is False


def test_auto_precision_is_bf16_on_gpus_and_amx_cpus(tiny_backbone_dir, monkeypatch):
    """'auto' runs bf16 where it is fast (CUDA, AMX CPUs), fp32 elsewhere; bf16 features stay
    within a few hundredths of fp32 ones and keep their cosine geometry."""
    for amx in (True, False):
        monkeypatch.setattr(backbones, "cpu_has_amx_bf16", lambda amx=amx: amx)
        chosen = load_backbone(f"local-dir:{tiny_backbone_dir}", device="cpu").dtype
        assert chosen == (torch.bfloat16 if amx else torch.float32)
    crops = RNG.integers(0, 256, (4, 224, 224, 3), dtype=np.uint8)
    fp32, _ = load_backbone(f"local-dir:{tiny_backbone_dir}", device="cpu",
                            dtype="float32").forward(crops)
    bf16, _ = load_backbone(f"local-dir:{tiny_backbone_dir}", device="cpu",
                            dtype="bfloat16").forward(crops)
    assert bf16.dtype == np.float32 and np.abs(bf16 - fp32).max() < 0.1
    cosine = (bf16 * fp32).sum(1) / np.linalg.norm(bf16, axis=1) / np.linalg.norm(fp32, axis=1)
    assert cosine.min() > 0.999


def small_hub_model(cache_dir, repo_id: str = "Snarcy/RedDino-small") -> torch.nn.Module:
    """A small timm ViT/14 saved in the HF cache layout under ``repo_id`` (what the hub gives)."""
    torch.manual_seed(2)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                              img_size=224, embed_dim=64, depth=1, num_heads=2).eval()
    save_for_hf(model, str(hub_cache_entry(cache_dir, repo_id)), safe_serialization=True)
    return model


def test_cached_reddino_is_offered_first_and_loads_offline(tmp_path, monkeypatch):
    """RedDino weights in the HF cache: listed first, recommended, described, loadable offline."""
    from huggingface_hub import constants as hf_constants

    from napari_reddino.embed import offers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    assert offers.cached_backbones() == []
    assert offers.recommended_backbone() == DEFAULT_BACKBONE
    found = offers.backbone_offers()
    assert [o.state for o in found[:2]] == ["bundled", "download"]
    assert "bundled" in offers.describe_default()

    source = small_hub_model(tmp_path)
    assert offers.cached_backbones() == ["reddino-small"]
    assert offers.recommended_backbone() == "reddino-small"
    found = offers.backbone_offers()
    assert (found[0].name, found[0].state) == ("reddino-small", "cached")
    assert (found[1].name, found[1].state) == (DEFAULT_BACKBONE, "bundled")
    assert "reddino-small" not in [o.name for o in found[2:]]  # listed once
    assert "Hugging Face cache" in found[0].label
    assert "reddino-small" in offers.describe_default()
    backbone = load_backbone("reddino-small", device="cpu", dtype="float32")
    cls, _ = backbone.forward(TILES)
    with torch.inference_mode():
        expected = source.forward_features(to_input(backbone, TILES))[:, 0].numpy()
    np.testing.assert_allclose(cls, expected, atol=1e-4)


def test_config_without_weights_is_not_cached_and_downloads_refuse_offline(tmp_path,
                                                                         monkeypatch):
    from napari_reddino.embed import offers
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = hub_cache_entry(tmp_path, "Snarcy/RedDino-base")
    (snapshot / "config.json").write_text("{}")  # an interrupted download: no weights
    assert not offers.is_cached("reddino-base", tmp_path)
    offer = next(o for o in offers.backbone_offers(tmp_path) if o.name == "reddino-base")
    assert offer.state == "download" and offer.size_mb == 346
    assert "~346 MB" in offer.label
    with pytest.raises(ConnectionError, match="HF_HUB_OFFLINE"):
        list(offers.iter_download("reddino-base", tmp_path))
    with pytest.raises(ValueError, match="not a Hugging Face hub backbone"):
        list(offers.iter_download(DEFAULT_BACKBONE, tmp_path))


def test_cli_note_names_the_cached_reddino(tmp_path):
    from napari_reddino.embed import offers
    assert "bundled" in offers.cli_note(tmp_path)
    small_hub_model(tmp_path)
    note = offers.cli_note(tmp_path)
    assert "--backbone reddino-small" in note and "in your Hugging Face cache" in note
