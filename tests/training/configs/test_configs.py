"""Configs: default.yaml holds every key, a named config only what differs, merged at load."""

from __future__ import annotations

import re

import pytest
import yaml

from training.configs import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    ConfigError,
    TrainConfig,
    load_config,
    save_config,
)
from training.configs.schema import schema_keys

BUNDLED = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p != DEFAULT_CONFIG)


def _changed(cfg: TrainConfig, base: TrainConfig) -> dict[str, object]:
    """``section.key: value`` of ``cfg`` wherever it differs from ``base``."""
    new, old = cfg.to_dict(), base.to_dict()
    return {f"{s}.{k}": v for s in new for k, v in new[s].items() if v != old[s][k]}


def test_default_yaml_holds_every_key_documented_with_the_schema_defaults():
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert {section: list(values) for section, values in raw.items()} == schema_keys()
    assert load_config("default") == TrainConfig()
    undocumented = [line for line in DEFAULT_CONFIG.read_text().splitlines()
                    if re.match(r"^  \w+:", line) and "  # " not in line]  # fmt: skip
    assert not undocumented


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_configs_set_only_what_differs_from_the_default(name):
    """Short overrides: a key restating default.yaml's value would hide what the model changes."""
    raw = yaml.safe_load((CONFIG_DIR / f"{name}.yaml").read_text())
    cfg, default = load_config(name), TrainConfig()
    restated = [f"{s}.{k}" for s, values in raw.items() for k in values
                if getattr(getattr(cfg, s), k) == getattr(getattr(default, s), k)]  # fmt: skip
    assert not restated, f"{name}.yaml repeats default.yaml for {restated}"
    assert set(_changed(cfg, default)) == {f"{s}.{k}" for s, v in raw.items() for k in v}


def test_an_override_changes_only_its_own_keys(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  base_lr: 5.0e-4\ndata:\n  global_crop_ratio: [1, 1]\nrun:\n")
    cfg = load_config(path)
    assert _changed(cfg, TrainConfig()) == {"optim.base_lr": 5e-4,
                                            "data.global_crop_ratio": (1.0, 1.0)}  # fmt: skip
    # the command line applies last, over the file, and still changes nothing else
    cfg = load_config(path, ["optim.base_lr=1e-3", "run.iters=7"])
    assert _changed(cfg, TrainConfig()) == {"optim.base_lr": 1e-3, "run.iters": 7,
                                            "data.global_crop_ratio": (1.0, 1.0)}  # fmt: skip


def test_a_bundled_override_on_top_of_the_default():
    cfg = load_config("tiny_cpu", ["model.depth=3"])
    assert (cfg.model.embed_dim, cfg.model.depth) == (64, 3)  # the file's, then the command line's
    assert cfg.optim.beta2 == TrainConfig().optim.beta2 == 0.999  # not in the file: the default's


def test_an_empty_config_file_is_the_default(tmp_path):
    (tmp_path / "empty.yaml").write_text("# nothing to change\n")
    assert load_config(tmp_path / "empty.yaml") == TrainConfig()


def test_unknown_keys_are_refused_saying_where_and_what_was_meant(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("optim:\n  base_lrr: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown key 'optim\.base_lrr' "
                                          r"\(did you mean 'base_lr'\?\); known in optim: \["):
        load_config(path)
    path.write_text("optimizer:\n  base_lr: 1.0e-3\n")
    with pytest.raises(ConfigError, match=r"typo\.yaml: unknown section 'optimizer' "
                                          r"\(did you mean 'optim'\?\)"):
        load_config(path)
    path.write_text("optim: 3\n")
    with pytest.raises(ConfigError, match=r"section 'optim' must be a mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"command line: unknown key 'run\.itres'"):
        load_config("tiny_cpu", ["run.itres=5"])
    with pytest.raises(ConfigError, match=r"not valid YAML"):
        load_config("tiny_cpu", ["data.patch_dirs=[a"])


def test_saved_config_is_complete_and_loads_back_to_the_same_config(tmp_path):
    cfg = load_config("vits14_reddino", ["data.patch_dirs=[/data]", "run.stop_after=5"])
    save_config(cfg, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert {s: list(v) for s, v in saved.items()} == schema_keys()  # every key written out
    assert load_config(tmp_path / "config.yaml") == cfg


def test_a_run_writes_its_resolved_config(tmp_path):
    """default.yaml <- tiny_cpu.yaml <- command line, in full, in the run folder."""
    from training.train.distributed import DistEnv
    from training.train.loop import Trainer

    out = tmp_path / "run"
    overrides = [f"run.output_dir={out}", "run.iters=2", "data.batch_size_per_gpu=4",
                 "optim.base_lr=3.0e-3"]  # fmt: skip
    cfg = load_config("tiny_cpu", overrides)
    assert Trainer(cfg, DistEnv()).fit() == 1
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert {s: list(v) for s, v in saved.items()} == schema_keys()
    assert saved["optim"]["base_lr"] == 3e-3  # the command line's
    assert saved["model"]["embed_dim"] == 64  # tiny_cpu.yaml's
    assert saved["optim"]["beta2"] == 0.999  # default.yaml's
    assert load_config(out / "config.yaml") == cfg
