"""Training configs: ``default.yaml`` holds every key, a named config only what differs from it.

``load_config("vits14_reddino", ["optim.base_lr=1e-4"])`` merges ``default.yaml``, then
``vits14_reddino.yaml``, then the ``section.key=value`` overrides, and types the result
(:mod:`training.configs.schema`), as DINOv2 merges its default config with a per-model file. A key
the schema lacks is refused, naming the file it came from, so a typo never silently trains with a
default. Every run writes the merged result to ``<output_dir>/config.yaml``, which loads back to
the same config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from training.configs.schema import (
    ConfigError,
    DataConfig,
    HeadConfig,
    LossConfig,
    MaskConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TeacherConfig,
    TrainConfig,
    config_from_dict,
    schema_keys,
    unknown_key_message,
)

CONFIG_DIR = Path(__file__).parent
DEFAULT_CONFIG = CONFIG_DIR / "default.yaml"

__all__ = [
    "CONFIG_DIR", "DEFAULT_CONFIG", "RESUME_MAY_CHANGE", "ConfigError", "DataConfig", "HeadConfig",
    "LossConfig", "MaskConfig", "ModelConfig", "OptimConfig", "RunConfig", "TeacherConfig",
    "TrainConfig", "apply_overrides", "config_from_dict", "load_config", "merge_config",
    "merged_dict", "read_yaml", "resolve_config_path", "resume_differences", "save_config",
]  # fmt: skip


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A config file's sections (an empty file has none); bad YAML or a non-mapping is refused."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a training config must be a mapping of sections")
    return data


def merge_config(base: dict[str, Any], override: dict[str, Any], *, source: str) -> dict[str, Any]:
    """``base`` with ``override``'s values in place of its own (a list is replaced whole).

    Only the schema's sections and keys may appear in ``override``: anything else is refused
    with ``source`` (a file, or "command line") in the message.
    """
    keys = schema_keys()
    merged = {section: dict(values or {}) for section, values in base.items()}
    for section, values in override.items():
        if section not in keys:
            raise ConfigError(f"{source}: {unknown_key_message(section, list(keys))}")
        if values is None:  # a section left empty ("run:") changes nothing
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {section!r} must be a mapping of keys, "
                              f"got {type(values).__name__}")  # fmt: skip
        for key, value in values.items():
            if key not in keys[section]:
                message = unknown_key_message(f"{section}.{key}", keys[section])
                raise ConfigError(f"{source}: {message}")
            merged.setdefault(section, {})[key] = value
    return merged


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings -> nested dicts, each value parsed as YAML."""
    parsed: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"override key {dotted!r} must be section.key (e.g. optim.base_lr)")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError as err:
            raise ConfigError(f"override {item!r}: the value is not valid YAML ({err})") from None
        parsed.setdefault(parts[0], {})[parts[1]] = value
    return parsed


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested config dict."""
    return merge_config(data, parse_overrides(overrides), source="command line")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path, or the bare name of a bundled config (``tiny_cpu`` -> configs/tiny_cpu.yaml)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / (path.name if path.suffix else f"{path.name}.yaml")
    if bundled.is_file():
        return bundled
    choices = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"config {str(name_or_path)!r} not found; bundled configs: {choices}")


def merged_dict(name_or_path: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """``default.yaml`` <- the named config <- ``overrides``, as plain nested dicts."""
    path = resolve_config_path(name_or_path)
    data = read_yaml(DEFAULT_CONFIG)
    if path.resolve() != DEFAULT_CONFIG.resolve():
        data = merge_config(data, read_yaml(path), source=str(path))
    return apply_overrides(data, list(overrides or []))


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """The :class:`TrainConfig` of a config (path or bundled name) plus ``section.key=value``s."""
    return config_from_dict(merged_dict(name_or_path, overrides))


# Keys a resumed run may change: how long it runs, how it logs and checkpoints, data workers.
RESUME_MAY_CHANGE = frozenset({
    "run.output_dir", "run.stop_after", "run.max_minutes", "run.checkpoint_every",
    "run.checkpoint_every_minutes", "run.keep_checkpoints", "run.log_every", "run.threads",
    "run.nan_abort_after", "run.tensorboard", "run.compile", "data.num_workers",
    "data.verify_shards",
})  # fmt: skip


def resume_differences(saved: dict[str, Any] | None, config: TrainConfig) -> list[str]:
    """``section.key: saved -> new`` for every setting a resume would silently ignore.

    Schedules, optimizer and data order come from the checkpoint, so a changed lr, batch or
    augmentation would not apply (yet be written to config.yaml); the caller refuses instead.
    """
    if not saved:
        return []
    try:
        old = config_from_dict(saved).to_dict()
    except ConfigError:  # a checkpoint from an older layout: nothing reliable to compare
        return []
    new = config.to_dict()
    changed = []
    for section, values in new.items():
        for key, value in values.items():
            before = old[section][key]
            if f"{section}.{key}" not in RESUME_MAY_CHANGE and before != value:
                changed.append(f"{section}.{key}: {before!r} -> {value!r}")
    return changed


SAVED_HEADER = """\
# The resolved config of this run: default.yaml, the named config and the command-line
# overrides merged, every key written out. Rerun it with
#   python -m training train --config THIS_FILE run.output_dir=NEW_DIR
"""


def save_config(config: TrainConfig, path: str | Path) -> None:
    """Write the resolved config next to a run so it can be reproduced exactly."""
    data = config.to_dict()
    for section in data.values():
        for key, value in section.items():
            if isinstance(value, tuple):
                section[key] = list(value)
    Path(path).write_text(SAVED_HEADER + yaml.safe_dump(data, sort_keys=False))
