"""Backbone registry: names -> timm ViTs, loaded through one path (``timm.create_model``).

Every backbone, bundled or downloaded, is a timm model in timm's own Hugging Face folder
format (``config.json`` + ``model.safetensors``), so ``hf-hub:``, ``local-dir:`` and plain
timm names all share one loader, and an export from ``training/`` loads here unchanged.
"""

from __future__ import annotations

import functools
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import timm
import torch
from huggingface_hub import constants as hf_constants
from huggingface_hub import try_to_load_from_cache
from huggingface_hub.errors import (
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
)

from napari_reddino.defaults import DEFAULTS

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BUNDLED_WEIGHTS_DIR = Path(__file__).parents[1] / "weights"  # napari_reddino/weights


class WeightsNotFoundError(FileNotFoundError):
    """The weights of a backbone are neither cached nor reachable (offline / no network)."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one registry entry: a timm source plus the input it expects."""

    source: str  # timm name, "hf-hub:owner/repo" or "local-dir:/folder"
    img_size: int | None = 224  # None: keep what the checkpoint says
    patch_size: int = 14
    pooling: str = "cls"  # the image-level vector: the CLS token
    description: str = ""


def _local(folder: Path) -> str:
    return f"local-dir:{folder}"


DEFAULT_BACKBONE = DEFAULTS.backbone
BACKBONES: dict[str, BackboneSpec] = {
    "reddino-tiny": BackboneSpec(
        _local(BUNDLED_WEIGHTS_DIR / "reddino-tiny"), None, 14, "cls",
        "bundled ViT-S/14-shaped tiny model (192-d, 6 blocks), trained on RBC smears"),
    "reddino-small": BackboneSpec("hf-hub:Snarcy/RedDino-small", 224, 14, "cls", "RedDino S/14"),
    "reddino-base": BackboneSpec("hf-hub:Snarcy/RedDino-base", 224, 14, "cls", "RedDino B/14"),
    "reddino-large": BackboneSpec("hf-hub:Snarcy/RedDino-large", 224, 14, "cls", "RedDino L/14"),
    "dinov2-small": BackboneSpec("vit_small_patch14_dinov2.lvd142m", 224, 14, "cls", "DINOv2 S"),
    "dinov2-base": BackboneSpec("vit_base_patch14_dinov2.lvd142m", 224, 14, "cls", "DINOv2 B"),
    "dinov2-large": BackboneSpec("vit_large_patch14_dinov2.lvd142m", 224, 14, "cls", "DINOv2 L"),
    "dinov2-giant": BackboneSpec("vit_giant_patch14_dinov2.lvd142m", 224, 14, "cls", "DINOv2 g"),
    "dinobloom-small": BackboneSpec(
        "hf-hub:1aurent/vit_small_patch14_224.dinobloom", 224, 14, "cls", "DinoBloom S"),
    "dinobloom-base": BackboneSpec(
        "hf-hub:1aurent/vit_base_patch14_224.dinobloom", 224, 14, "cls", "DinoBloom B"),
    "dinobloom-large": BackboneSpec(
        "hf-hub:1aurent/vit_large_patch14_224.dinobloom", 224, 14, "cls", "DinoBloom L"),
}


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick CUDA, then Apple MPS, then CPU for ``"auto"``; validate an explicit choice."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device not in ("cuda", "mps", "cpu") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cuda', 'mps' or 'cpu', got {device!r}")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    return torch.device(device)


_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@functools.cache
def cpu_has_amx_bf16() -> bool:
    """True on CPUs with AMX bf16 tiles (Intel Xeon Sapphire Rapids and later, Linux); read once."""
    try:
        with open("/proc/cpuinfo") as info:
            return any(line.startswith("flags") and " amx_bf16" in line for line in info)
    except OSError:
        return False


def _resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    """bf16 autocast on GPU and on AMX CPUs (2-3x faster, features within ~1e-2), else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        fast_bf16 = device.type == "cuda" or (device.type == "cpu" and cpu_has_amx_bf16())
        return torch.bfloat16 if fast_bf16 else torch.float32
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto' or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


class Backbone:
    """A ViT in eval mode on its device, with uint8-in / float32-numpy-out inference."""

    def __init__(self, model: torch.nn.Module, name: str, *, device="auto", dtype="auto"):
        if not hasattr(model, "patch_embed") or not hasattr(model, "num_prefix_tokens"):
            raise ValueError(
                f"backbone {name!r} is not a ViT with patch tokens (timm VisionTransformer); "
                "patch grids need one")
        self.device = resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        self.name = name
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)
        for block in getattr(model, "blocks", []):  # SDPA (flash / memory-efficient kernels)
            if hasattr(block, "attn") and hasattr(block.attn, "fused_attn"):
                block.attn.fused_attn = True
        self.patch_size = int(model.patch_embed.patch_size[0])
        self.img_size = int(model.patch_embed.img_size[0])
        self.embed_dim = int(model.embed_dim)
        cfg = getattr(model, "pretrained_cfg", {}) or {}
        self.mean = tuple(float(v) for v in cfg.get("mean", IMAGENET_MEAN))
        self.std = tuple(float(v) for v in cfg.get("std", IMAGENET_STD))
        mean = torch.tensor(self.mean, device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=self.device).view(1, 3, 1, 1)
        self._scale = 1.0 / (255.0 * std)  # x_norm = x_uint8 * scale + shift
        self._shift = -mean / std

    @property
    def grid_size(self) -> int:
        """Patch tokens per side of one input window."""
        return self.img_size // self.patch_size

    def __repr__(self) -> str:
        return (f"Backbone({self.name!r}, dim={self.embed_dim}, img={self.img_size}, "
                f"patch={self.patch_size}, {self.device.type}, {str(self.dtype)[6:]})")

    def preprocess(self, batch: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) -> normalized float (B, 3, img, img), channels-last, on device."""
        batch = np.asarray(batch)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
            raise ValueError(
                f"backbone input must be uint8 (B, H, W, 3), got {batch.dtype} {batch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float()  # NHWC memory seen as NCHW: already channels-last
        if x.shape[-2:] != (self.img_size, self.img_size):
            x = torch.nn.functional.interpolate(
                x, size=(self.img_size, self.img_size), mode="bicubic", antialias=True,
                align_corners=False).clamp_(0, 255)
        return x.mul_(self._scale).add_(self._shift).contiguous(memory_format=torch.channels_last)

    def forward_tensor(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Preprocessed batch -> (pooled (B, D), patch tokens (B, h, w, D)) on device."""
        with torch.inference_mode(), torch.autocast(
                self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            tokens = self.model.forward_features(x)
            pooled = self.model.forward_head(tokens, pre_logits=True)
        patches = tokens[:, self.model.num_prefix_tokens:]
        h, w = x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size
        return pooled, patches.reshape(x.shape[0], h, w, -1)

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 NHWC batch -> (cls (B, D), patches (B, h, w, D)) as float32 numpy."""
        pooled, patches = self.forward_tensor(self.preprocess(batch))
        return (pooled.float().cpu().numpy(), patches.float().cpu().numpy())

    __call__ = forward


def _offline() -> bool:
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(hf_constants.HF_HUB_OFFLINE) or env in ("1", "on", "yes", "true")


def _hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect, so a machine without network fails at once instead of retrying."""
    host = hf_constants.ENDPOINT.split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def _hub_repo_and_file(source: str) -> tuple[str, str] | None:
    """The HF repo (and a file that must be cached) behind a source, None for local folders."""
    if source.startswith("hf-hub:"):
        return source[len("hf-hub:"):].split("@")[0], "config.json"
    if source.startswith("local-dir:"):
        return None
    cfg = timm.models.get_pretrained_cfg(source)
    if cfg is None or not cfg.hf_hub_id:
        return None
    return cfg.hf_hub_id, cfg.hf_hub_filename or "model.safetensors"


def _missing_weights(name: str, repo: str, cache_dir, why: str) -> WeightsNotFoundError:
    folder = cache_dir or hf_constants.HF_HUB_CACHE
    error = WeightsNotFoundError(
        f"weights for backbone {name!r} (Hugging Face model id {repo!r}) are not available "
        f"({why}) and not cached. "
        f"Looked in the Hugging Face cache folder {folder}. Download them once while online "
        f"(e.g. `hf download {repo}`) or pass a local folder in timm format instead: "
        f"load_backbone('local-dir:/path/to/folder') with config.json + model.safetensors "
        f"(see napari_reddino.embed.backbones.export_backbone).")
    # what a dock needs to say it in its own words (a button, not Python)
    error.backbone, error.repo, error.cache_folder, error.why = name, repo, str(folder), why
    return error


def _create_model(name: str, spec: BackboneSpec, cache_dir) -> torch.nn.Module:
    """timm.create_model with the registry's input size, turning hub/offline failures clear."""
    kwargs = {"num_classes": 0}
    if spec.img_size is not None:
        kwargs["img_size"] = spec.img_size
    source = spec.source
    if source.startswith("local-dir:"):
        folder = Path(source[len("local-dir:"):]).expanduser()
        if not (folder / "config.json").is_file():
            bundled = folder.parent == BUNDLED_WEIGHTS_DIR
            raise WeightsNotFoundError(
                f"backbone {name!r}: no timm model folder at {folder} (config.json missing)"
                + (". This bundled model is not bundled yet in this installation; use another "
                   "backbone, e.g. 'dinov2-small', or a 'local-dir:' folder" if bundled else
                   ". Pass a folder written by napari_reddino.embed.backbones.export_backbone"))
        source = f"local-dir:{folder}"
        try:
            json.loads((folder / "config.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ValueError(f"backbone {name!r}: {folder / 'config.json'} is damaged ({err}); "
                             "export the model again or restore that file") from err
    hub = _hub_repo_and_file(source)
    if hub is not None:
        repo, filename = hub
        cached = try_to_load_from_cache(repo, filename, cache_dir=cache_dir)
        if not isinstance(cached, str):
            if _offline():
                raise _missing_weights(name, repo, cache_dir, "offline (HF_HUB_OFFLINE)")
            if not _hub_reachable():
                raise _missing_weights(name, repo, cache_dir, "the hub is unreachable")
    try:
        return timm.create_model(source, pretrained=True, cache_dir=cache_dir, **kwargs)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled, HfHubHTTPError, ConnectionError) as err:
        repo = hub[0] if hub else source
        raise _missing_weights(name, repo, cache_dir, type(err).__name__) from err
    except RuntimeError as err:  # e.g. a timm architecture without published weights
        raise ValueError(f"backbone {name!r} cannot be loaded: {err}") from err
    except Exception as err:
        if type(err).__name__ != "SafetensorError":
            raise
        where = (Path(source[len("local-dir:"):]) / "model.safetensors"
                 if source.startswith("local-dir:") else f"of {hub[0] if hub else source!r}")
        raise ValueError(f"backbone {name!r}: the weights file {where} is damaged or truncated "
                         f"({err}); export or download it again") from err


def _spec_for(name_or_path: str) -> tuple[str, BackboneSpec]:
    """Registry name, prefixed source, folder path or plain timm name -> (display name, spec)."""
    if name_or_path in BACKBONES:
        return name_or_path, BACKBONES[name_or_path]
    if name_or_path.startswith(("hf-hub:", "local-dir:")):
        return name_or_path, BackboneSpec(name_or_path, None)
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), BackboneSpec(_local(path.resolve()), None)
    if path.suffix in (".pth", ".pt") and path.is_file():
        raise ValueError(
            f"{name_or_path} is a raw checkpoint; convert it first with "
            "napari_reddino.embed.backbones.convert_dinov2_checkpoint(path, folder), then load "
            "'local-dir:folder'")
    if timm.is_model(name_or_path.split(".")[0]):
        img_size = 224 if "dinov2" in name_or_path else None
        return name_or_path, BackboneSpec(name_or_path, img_size)
    raise ValueError(
        f"unknown backbone {name_or_path!r}: use one of {sorted(BACKBONES)}, a timm model name, "
        "'hf-hub:owner/repo', or 'local-dir:/path/to/folder'")


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def weights_identity(name_or_path: str) -> str:
    """What tells one set of weights from another under the same name: a hash of a local
    folder's files, the cached hub snapshot, else the source. Run folders record it, so a
    bundled model replaced by a newer one (same name) makes finished smears be redone.
    A name that names no weights (yet) is its own identity: loading it will say what is wrong."""
    try:
        _, spec = _spec_for(name_or_path.strip())
    except ValueError:
        return name_or_path
    if spec.source.startswith("local-dir:"):
        folder = Path(spec.source.removeprefix("local-dir:"))
        files = sorted(p for p in folder.glob("*") if p.suffix in (".safetensors", ".bin",
                                                                    ".json", ".pth"))
        return "+".join(_file_digest(str(p), p.stat().st_size, p.stat().st_mtime_ns)
                        for p in files) or spec.source
    repo = _hub_repo_and_file(spec.source)
    if repo is not None:
        cached = try_to_load_from_cache(repo[0], repo[1])
        if isinstance(cached, str):  # .../snapshots/<commit>/<file>
            return f"{spec.source}@{Path(cached).parent.name}"
    return spec.source


def load_backbone(name_or_path: str = DEFAULT_BACKBONE, *, device="auto", dtype="auto",
                  cache_dir: str | Path | None = None) -> Backbone:
    """Build a :class:`Backbone` from a registry name, ``hf-hub:``/``local-dir:`` source,
    folder or timm name. ``cache_dir`` overrides the Hugging Face cache folder."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise ValueError(f"backbone name must be a non-empty string, got {name_or_path!r}")
    name, spec = _spec_for(name_or_path.strip())
    model = _create_model(name, spec, cache_dir)
    return Backbone(model, name, device=device, dtype=dtype)


def export_backbone(model: torch.nn.Module, folder: str | Path, *, img_size: int,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, tag: str | None = None,
                    model_args: dict | None = None) -> Path:
    """Write ``model`` in timm's HF folder format (loadable as ``local-dir:folder``)."""
    from timm.models import save_for_hf

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if int(model.patch_embed.img_size[0]) != img_size:
        raise ValueError(f"model input size is {tuple(model.patch_embed.img_size)}, not {img_size}")
    cfg = {"mean": tuple(float(v) for v in mean), "std": tuple(float(v) for v in std),
           "input_size": (3, img_size, img_size), "interpolation": "bicubic", "crop_pct": 1.0}
    if tag is not None:
        cfg["tag"] = tag
    model.pretrained_cfg = {**dict(getattr(model, "pretrained_cfg", {}) or {}), **cfg}
    for tensor in [*model.parameters(), *model.buffers()]:  # safetensors wants packed memory
        if not tensor.is_contiguous():
            tensor.data = tensor.data.contiguous()
    save_for_hf(model, str(folder), model_config={"pretrained_cfg": dict(cfg)},
                model_args=model_args, safe_serialization=True, data_config=dict(cfg))
    return folder


def build_random_backbone(folder: str | Path, *, architecture: str = "vit_small_patch14_dinov2",
                          img_size: int = 224, seed: int = 0, mean=IMAGENET_MEAN,
                          std=IMAGENET_STD, **model_args) -> Path:
    """Export a random-init backbone of a given shape (tests, and the random-init baseline)."""
    torch.manual_seed(seed)
    model = timm.create_model(architecture, pretrained=False, num_classes=0,
                              img_size=img_size, **model_args)
    return export_backbone(model, folder, img_size=img_size, mean=mean, std=std,
                           tag=f"random-init-seed{seed}")


def convert_dinov2_checkpoint(checkpoint: str | Path, folder: str | Path, *, img_size: int = 224,
                              key: str = "teacher", mean=None, std=None) -> Path:
    """Official DINOv2/DinoBloom ``.pth`` -> timm folder loadable as ``local-dir:folder``."""
    from napari_reddino.embed.dinobloom import load_dinov2_checkpoint

    model = load_dinov2_checkpoint(checkpoint, img_size=img_size, key=key)
    return export_backbone(model, folder, img_size=img_size, mean=mean or IMAGENET_MEAN,
                           std=std or IMAGENET_STD, tag=f"converted-{Path(checkpoint).stem}")


__all__ = [
    "BACKBONES", "DEFAULT_BACKBONE", "Backbone", "BackboneSpec", "WeightsNotFoundError",
    "build_random_backbone", "convert_dinov2_checkpoint", "export_backbone", "load_backbone",
    "resolve_device",
]
