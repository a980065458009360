"""Teacher backbone of a checkpoint -> the plugin's model folder (+ a plain timm state dict).

DINOv2 evaluates and ships the EMA teacher, not the student. The folder is written by
``napari_reddino.embed.backbones.export_backbone`` (timm's ``save_for_hf`` format), so it loads as
``local-dir:<folder>`` in the plugin and can be pushed to the Hugging Face hub unchanged. Training
may use small crops; the position embedding is resampled to the exported input size.

Every checkpoint format exports: a ``checkpoint_*.pt`` file, a run folder (its newest checkpoint),
a sharded ``checkpoint_*.dcp`` folder (FSDP's per-rank shards, read here by one process without
a process group), and the single file ``python -m torch.distributed.checkpoint.format_utils
dcp_to_torch`` makes of such a folder.
"""

from __future__ import annotations

from pathlib import Path

import timm
import torch
import yaml
from timm.layers import resample_abs_pos_embed

from training.configs import ModelConfig, config_from_dict
from training.train.checkpoint import is_sharded_checkpoint, latest_checkpoint, load_checkpoint

TEACHER_PREFIX = "teacher.backbone."


def model_args(model_cfg: ModelConfig, img_size: int) -> dict:
    """The ``timm.create_model`` kwargs that rebuild the backbone (stored in config.json)."""
    args: dict = {"img_size": img_size, "patch_size": model_cfg.patch_size}
    for key in ("embed_dim", "depth", "num_heads"):
        if getattr(model_cfg, key) is not None:
            args[key] = getattr(model_cfg, key)
    if model_cfg.layerscale_init is not None:
        args["init_values"] = model_cfg.layerscale_init
    if model_cfg.num_register_tokens:
        args.update(reg_tokens=model_cfg.num_register_tokens, no_embed_class=True)
    return args


def teacher_backbone(state: dict, img_size: int) -> tuple[torch.nn.Module, dict]:
    """A plain timm ViT at ``img_size`` holding the checkpoint's teacher backbone weights."""
    cfg = config_from_dict(state["config"])
    args = model_args(cfg.model, img_size)
    model = timm.create_model(cfg.model.arch, pretrained=False, num_classes=0, **args)
    weights = {
        k[len(TEACHER_PREFIX) :]: v
        for k, v in state["models"].items()
        if k.startswith(TEACHER_PREFIX)
    }
    if not weights:
        raise ValueError("the checkpoint holds no teacher backbone ('teacher.backbone.*' keys)")
    pos = weights.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        prefix = 0 if model.no_embed_class else model.num_prefix_tokens
        weights["pos_embed"] = resample_abs_pos_embed(
            pos, new_size=model.patch_embed.grid_size, num_prefix_tokens=prefix
        )
    model.load_state_dict(weights, strict=True)
    return model.eval(), args


def sharded_teacher(folder: Path) -> dict[str, torch.Tensor]:
    """The teacher backbone's full tensors from a DCP folder, whatever the sharding it was saved
    with: only those keys are read (not the student, nor the optimizer's moments)."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(str(folder))
    stored = reader.read_metadata().state_dict_metadata
    prefix = "models." + TEACHER_PREFIX
    state = {key: torch.empty(meta.size, dtype=meta.properties.dtype)
             for key, meta in stored.items()
             if key.startswith(prefix) and isinstance(meta, TensorStorageMetadata)}  # fmt: skip
    if not state:
        raise ValueError(f"the sharded checkpoint {folder} holds no teacher backbone "
                         f"('{prefix}*' keys)")  # fmt: skip
    dcp.load(state, storage_reader=reader, no_dist=True)  # this one process reads every shard
    return {key[len("models.") :]: value for key, value in state.items()}


def read_for_export(path: Path) -> dict:
    """``{"models", "config", "step"}`` of any checkpoint format (``models``: the teacher at least).

    A ``dcp_to_torch`` file of a sharded checkpoint from before its shards carried the config
    takes it from the run's ``config.yaml`` beside it.
    """
    if is_sharded_checkpoint(path):
        meta = load_checkpoint(path)  # rank 0's meta.pt: step, config
        return {"models": sharded_teacher(path), "config": meta["config"], "step": meta["step"]}
    state = load_checkpoint(path, weights_only_ok=True)
    if "config" not in state:
        beside = path.parent / "config.yaml"
        if not beside.is_file():
            raise ValueError(f"{path} holds weights but not the run's config; put it in its run "
                             "folder (beside config.yaml) and export again")  # fmt: skip
        state["config"] = yaml.safe_load(beside.read_text())
    return {"models": state["models"], "config": state["config"], "step": state.get("step")}


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file or sharded folder, or the newest checkpoint in a run folder."""
    path = Path(path)
    if is_sharded_checkpoint(path):
        return path
    if path.is_dir():
        found = latest_checkpoint(path)
        if found is None:
            raise FileNotFoundError(f"no checkpoint_*.pt or checkpoint_*.dcp in run folder {path}")
        return found
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint or run folder at {path}")
    return path


def export_teacher(
    checkpoint: str | Path,
    folder: str | Path,
    *,
    img_size: int = 224,
    state_dict_path: str | Path | None = None,
    tag: str | None = None,
    readme: str | None = None,
) -> Path:
    """Export the teacher backbone of ``checkpoint`` (any format, or a run folder) to ``folder``.

    Writes ``config.json`` + ``model.safetensors`` (loadable by ``load_backbone("local-dir:...")``),
    ``training_config.yaml`` (the run's resolved config, for provenance) and, when
    ``state_dict_path`` is given, a plain state dict loadable with
    ``timm.create_model(arch, checkpoint_path=...)``. Returns the folder.
    """
    from napari_reddino.embed.backbones import IMAGENET_MEAN, IMAGENET_STD, export_backbone

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():  # checked before the slow work, not after
        raise ValueError(f"--out {folder} is an existing file; the export is a folder "
                         "(config.json, model.safetensors): give a new folder name, or remove "
                         "the file first")
    if state_dict_path is not None and Path(state_dict_path).is_dir():
        raise ValueError(f"--state-dict {state_dict_path} is a folder; give a file name "
                         "such as teacher.pth")
    path = resolve_checkpoint(checkpoint)
    state = read_for_export(path)
    model, args = teacher_backbone(state, img_size)
    step = state["step"]
    export_backbone(
        model, folder, img_size=img_size, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        tag=tag or (f"step{step}" if step is not None else path.stem), model_args=args,
    )
    (folder / "model.safetensors").chmod(0o644)  # package data must be world-readable
    (folder / "training_config.yaml").write_text(
        yaml.safe_dump({"checkpoint_step": step, **state["config"]}, sort_keys=False)
    )
    if readme is not None:
        (folder / "README.md").write_text(readme)
    if state_dict_path is not None:
        state_dict_path = Path(state_dict_path)
        state_dict_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), state_dict_path)
    return folder
