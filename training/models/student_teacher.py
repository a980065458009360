"""Student and EMA teacher: a timm DINOv2 ViT with an iBOT mask token, plus the DINO/iBOT heads.

The backbone is a stock timm ``vit_*_patch14_dinov2`` (what ``napari_reddino.embed`` loads and
exports), so a trained teacher is exported without any key renaming. iBOT needs one thing timm
does not do: replace the embeddings of masked patches by a learnable mask token *before* the
position embedding, so :meth:`DinoModel.tokens` runs timm's own stages with that swap in between.
"""

from __future__ import annotations

import contextlib
import copy
import os
from dataclasses import dataclass
from pathlib import Path

import timm
import torch
from timm.layers import resample_abs_pos_embed
from torch import nn
from torch.utils.checkpoint import checkpoint

from training.configs import HeadConfig, ModelConfig
from training.models.heads import DINOHead


def build_vit(cfg: ModelConfig, img_size: int) -> nn.Module:
    """A timm ViT of the configured shape (random init), taking any input size at run time."""
    kwargs = {
        "pretrained": False,
        "num_classes": 0,
        "img_size": img_size,
        "patch_size": cfg.patch_size,
        "drop_path_rate": cfg.drop_path_rate,
        "dynamic_img_size": True,
    }
    for key in ("embed_dim", "depth", "num_heads"):
        if getattr(cfg, key) is not None:
            kwargs[key] = getattr(cfg, key)
    if cfg.layerscale_init is not None:
        kwargs["init_values"] = cfg.layerscale_init
    if cfg.num_register_tokens:
        kwargs.update(reg_tokens=cfg.num_register_tokens, no_embed_class=True)
    try:
        model = timm.create_model(cfg.arch, **kwargs)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"cannot build timm model {cfg.arch!r} with {kwargs}: {err}") from err
    if cfg.attn not in ("sdpa", "eager"):
        raise ValueError(f"model.attn must be 'sdpa' or 'eager', got {cfg.attn!r}")
    for block in model.blocks:
        block.attn.fused_attn = cfg.attn == "sdpa"
    return model


# DINOv2's own torch.hub checkpoints (what RedDino's torch.hub.load read): unlike timm's copies
# of the same weights they still hold the trained iBOT mask token
_DINOV2_HUB = "https://dl.fbaipublicfiles.com/dinov2/dinov2_vit{0}14/dinov2_vit{0}14_pretrain.pth"
_DINOV2_SIZES = {"small": "s", "base": "b", "large": "l", "giant": "g"}


def _weight_files(source: str) -> list[Path]:
    """The weight files ``source`` was loaded from that are on disk (local or hub cache)."""
    from huggingface_hub import try_to_load_from_cache

    from napari_reddino.embed.backbones import BACKBONES

    source = BACKBONES[source].source if source in BACKBONES else source
    if source.startswith("local-dir:"):
        folder = Path(source[len("local-dir:"):]).expanduser()
        return [f for f in (folder / "model.safetensors", folder / "pytorch_model.bin")
                if f.is_file()]  # fmt: skip
    if source.startswith("hf-hub:"):
        repo = source[len("hf-hub:"):].split("@")[0]
    else:
        cfg = timm.models.get_pretrained_cfg(source)
        repo = getattr(cfg, "hf_hub_id", None)
    cached = try_to_load_from_cache(repo, "model.safetensors") if repo else None
    return [Path(cached)] if isinstance(cached, str) else []


def _token_in(path: Path, dim: int) -> torch.Tensor | None:
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            names = f.keys()
            token = f.get_tensor("mask_token") if "mask_token" in names else None
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
        token = state.get("mask_token") if isinstance(state, dict) else None
    if token is None or token.numel() != dim:
        return None
    return token.detach().float().reshape(1, dim)


@contextlib.contextmanager
def _local_rank_zero_first():
    """In a process group, each node's local rank 0 runs the block first (the download) while
    the node's other ranks wait, then they run it from the cache: one download per node, not
    one per GPU racing into the same cache. Every rank must enter it (all build the model)."""
    import torch.distributed as dist

    joined = dist.is_available() and dist.is_initialized()
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    if joined and not first:
        dist.barrier()  # released by the barrier the first ranks reach after the block
    try:
        yield
    finally:
        if joined and first:
            dist.barrier()


def pretrained_mask_token(source: str, dim: int) -> torch.Tensor | None:
    """The trained iBOT mask token of ``source``'s checkpoint, or None if it has none.

    timm drops it when loading, so it is read from the weight file itself; for the ``dinov2-*``
    names from DINOv2's torch.hub checkpoint (downloaded once per node into torch.hub's cache).
    """
    with _local_rank_zero_first():
        return _mask_token(source, dim)


def _mask_token(source: str, dim: int) -> torch.Tensor | None:
    for path in _weight_files(source):
        if (token := _token_in(path, dim)) is not None:
            return token
    size = _DINOV2_SIZES.get(source.removeprefix("dinov2-")) if source.startswith("dinov2-") \
        else None
    if size is None:
        return None
    url = _DINOV2_HUB.format(size)
    try:
        state = torch.hub.load_state_dict_from_url(url, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:  # offline: the token starts at zero as before
        print(f"[training] mask token of {source!r} not loaded ({url}: {err}); starting at 0",
              flush=True)
        return None
    token = state.get("mask_token")
    return None if token is None or token.numel() != dim else token.float().reshape(1, dim)


def load_init_weights(model: nn.Module, source: str) -> torch.Tensor | None:
    """Continue pretraining: copy DINOv2 / RedDino (or any registry backbone) weights in.

    The position embedding is resampled to this model's grid, as DINOv2 does between its 518 px
    checkpoints and 224 px training crops. Returns the checkpoint's trained mask token (None if
    it has none), which the student keeps instead of a zero one.
    """
    from napari_reddino.embed.backbones import load_backbone

    state = load_backbone(source, device="cpu", dtype="float32").model.state_dict()
    own = model.state_dict()
    if "pos_embed" in state and state["pos_embed"].shape != own["pos_embed"].shape:
        prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
        state["pos_embed"] = resample_abs_pos_embed(
            state["pos_embed"], new_size=model.patch_embed.grid_size, num_prefix_tokens=prefix
        )
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if not k.startswith("head")]:
        raise ValueError(
            f"weights of {source!r} do not fit model {type(model).__name__}: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    return pretrained_mask_token(source, model.embed_dim)


@dataclass
class DinoOutputs:
    """What the losses need from one forward pass."""

    global_cls_logits: torch.Tensor  # (2B, K)
    masked_patch_logits: torch.Tensor  # (n_masked, K') at the masked positions
    global_cls: torch.Tensor  # (2B, D) pre-head CLS tokens (KoLeo)
    local_cls_logits: torch.Tensor | None = None  # (L*B, K)


class DinoModel(nn.Module):
    """Backbone + DINO head (+ separate iBOT head) + mask token: one student or teacher."""

    def __init__(self, backbone: nn.Module, head_cfg: HeadConfig):
        super().__init__()
        dim = backbone.embed_dim
        self.backbone = backbone
        self.dino_head = DINOHead(
            dim, head_cfg.out_dim, head_cfg.hidden_dim, head_cfg.bottleneck_dim, head_cfg.nlayers,
            use_bn=head_cfg.use_bn,
        )
        self.ibot_head = (
            DINOHead(
                dim,
                head_cfg.ibot_out_dim or head_cfg.out_dim,
                head_cfg.hidden_dim,
                head_cfg.bottleneck_dim,
                head_cfg.nlayers,
                use_bn=head_cfg.use_bn,
            )
            if head_cfg.ibot_separate_head
            else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, dim))
        self.activation_checkpointing = False  # model.activation_checkpointing (student only)

    def tokens(self, images: torch.Tensor, masks: torch.Tensor | None = None) -> torch.Tensor:
        """Normalized output tokens (B, prefix + N, D); masked patches see only the mask token."""
        vit = self.backbone
        x = vit.patch_embed(images)  # (B, h, w, D) with dynamic_img_size
        if masks is not None:
            flat = x.reshape(x.shape[0], -1, x.shape[-1])
            flat = torch.where(masks.unsqueeze(-1), self.mask_token.to(flat.dtype), flat)
            x = flat.reshape(x.shape)
        x = vit._pos_embed(x)
        x = vit.patch_drop(x)
        x = vit.norm_pre(x)
        if self.activation_checkpointing and torch.is_grad_enabled():
            for block in vit.blocks:  # keep only block inputs; recompute the rest in backward
                x = checkpoint(block, x, use_reentrant=False)
        else:
            x = vit.blocks(x)
        return vit.norm(x)

    def forward(
        self,
        global_crops: torch.Tensor,
        masks: torch.Tensor,
        *,
        mask_inputs: bool,
        local_crops: torch.Tensor | None = None,
    ) -> DinoOutputs:
        """Heads over the global CLS tokens and the patch tokens at ``masks``.

        ``mask_inputs`` is True for the student (it must not see the masked patches) and False for
        the teacher (it sees everything and supplies the targets there).
        """
        tokens = self.tokens(global_crops, masks if mask_inputs else None)
        cls = tokens[:, 0]
        patches = tokens[:, self.backbone.num_prefix_tokens :]
        masked = patches[masks]
        if self.ibot_head is None and not self.dino_head.use_bn:
            both = self.dino_head(torch.cat([cls, masked]))  # shared head: one pass over both
            cls_logits, patch_logits = both[: cls.shape[0]], both[cls.shape[0] :]
        elif self.ibot_head is None:  # BatchNorm statistics per token kind, not mixed
            cls_logits, patch_logits = self.dino_head(cls), self.dino_head(masked)
        else:
            cls_logits, patch_logits = self.dino_head(cls), self.ibot_head(masked)
        local_logits = None
        if local_crops is not None and local_crops.numel():
            local_logits = self.dino_head(self.tokens(local_crops)[:, 0])
        return DinoOutputs(cls_logits, patch_logits, cls, local_logits)


class StudentTeacher(nn.Module):
    """The trained student and its EMA teacher (same architecture, teacher never gets gradients)."""

    def __init__(self, model_cfg: ModelConfig, head_cfg: HeadConfig, img_size: int):
        super().__init__()
        backbone = build_vit(model_cfg, img_size)
        token = load_init_weights(backbone, model_cfg.init_from) if model_cfg.init_from else None
        self.student = DinoModel(backbone, head_cfg)
        if token is not None:  # DINOv2 / RedDino trained it: a zero token would be relearnt
            with torch.no_grad():
                self.student.mask_token.copy_(token)
        self.teacher = copy.deepcopy(self.student)
        self.teacher.requires_grad_(False)
        # no stochastic depth in the teacher: its targets must be deterministic
        for module in self.teacher.modules():
            if hasattr(module, "drop_prob"):
                module.drop_prob = 0.0
        self.teacher.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        # A head's BatchNorm normalizes with the batch's statistics in the teacher too (as in
        # DINO): its running buffers are never EMA-updated, so eval-mode BN would be stale.
        for module in self.teacher.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.train(mode)
        return self

    @torch.no_grad()
    def update_teacher(self, momentum: float) -> None:
        """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
        for model in (self.teacher, self.student):
            for module in model.modules():  # FSDP2: pair the local shards, not gathered copies
                if hasattr(module, "reshard"):  # (every block: reshard_after_forward may be off)
                    module.reshard()
        teacher_params = list(self.teacher.parameters())
        student_params = [p.detach() for p in self.student.parameters()]
        torch._foreach_mul_(teacher_params, momentum)
        torch._foreach_add_(teacher_params, student_params, alpha=1.0 - momentum)
