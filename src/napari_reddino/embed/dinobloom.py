"""Convert official DINOv2-format ``.pth`` checkpoints (e.g. DinoBloom teachers) to timm folders.

DinoBloom publishes its weights as DINOv2 training checkpoints (``teacher`` dict, ``backbone.``
prefix, heads alongside, sometimes chunked blocks). timm already knows the DINOv2 key layout
(its ``checkpoint_filter_fn``), so we only unwrap, infer the architecture and export.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import timm
import torch
from timm.models.vision_transformer import checkpoint_filter_fn

_SIZE_BY_DIM = {384: "small", 768: "base", 1024: "large", 1536: "giant"}
_STANDARD_DEPTH = {"small": 12, "base": 12, "large": 24, "giant": 40}
_HEAD_PREFIXES = ("dino_head", "ibot_head", "head")


def _unwrap(checkpoint: dict, key: str) -> dict[str, torch.Tensor]:
    """Find the backbone tensors: teacher/model/state_dict nesting, ``backbone.`` prefix, chunks."""
    state = checkpoint
    for name in (key, "teacher", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(name), dict):
            state = state[name]
            break
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith("backbone.") for k in tensors):
        tensors = {k[len("backbone."):]: v for k, v in tensors.items() if k.startswith("backbone.")}
    tensors = {k: v for k, v in tensors.items() if not k.startswith(_HEAD_PREFIXES)}
    # DINOv2 training with block_chunks stores blocks as blocks.<chunk>.<index>.*
    return {re.sub(r"^blocks\.\d+\.(\d+)\.", r"blocks.\1.", k): v for k, v in tensors.items()}


def _architecture(state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    """timm architecture name + model_args reproducing the checkpoint's shape."""
    if "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise ValueError(
            "not a DINOv2-format ViT checkpoint: no cls_token / patch_embed.proj.weight "
            f"(found keys like {sorted(state)[:5]})")
    dim = int(state["cls_token"].shape[-1])
    patch = int(state["patch_embed.proj.weight"].shape[-1])
    depth = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k)))
    size = _SIZE_BY_DIM.get(dim, "small")
    regs = int(state["register_tokens"].shape[1]) if "register_tokens" in state else 0
    arch = f"vit_{size}_patch14{'_reg4' if regs else ''}_dinov2"
    args: dict = {}
    if dim not in _SIZE_BY_DIM or depth != _STANDARD_DEPTH[size]:
        args.update(embed_dim=dim, depth=depth, num_heads=max(1, dim // 64))
    if patch != 14:
        args["patch_size"] = patch
    if regs and regs != 4:
        args["reg_tokens"] = regs
    return arch, args


def load_dinov2_checkpoint(checkpoint: str | Path, *, img_size: int = 224,
                           key: str = "teacher") -> torch.nn.Module:
    """Official DINOv2/DinoBloom ``.pth`` -> timm ViT holding its weights.

    ``backbones.convert_dinov2_checkpoint`` exports it as a folder (this module imports nothing
    of the package, so ``backbones`` can import it without an import cycle).
    """
    path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{path} is not a readable PyTorch tensor checkpoint: {err}") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{path} holds a {type(raw).__name__}, not a state dict")
    state = _unwrap(raw, key)
    arch, model_args = _architecture(state)
    model = timm.create_model(arch, pretrained=False, num_classes=0, img_size=img_size,
                              **model_args)
    converted = checkpoint_filter_fn(dict(state), model)  # mask_token, SwiGLU names, pos_embed
    missing, unexpected = model.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not match {arch} {model_args}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}")
    return model
