"""Every checkpoint format exports, and the plugin then computes exactly the checkpoint's features.

Formats: a sharded DCP folder (one process's, and FSDP's per-rank shards from a 2-process Gloo
run), the run folder holding it, and the single file torch's own converter
(``python -m torch.distributed.checkpoint.format_utils dcp_to_torch``) makes of it.
The reference features come from the full state torch's ``dcp_to_torch_save`` rebuilds, loaded
into the training model, not from the export code under test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.distributed.checkpoint.format_utils import dcp_to_torch_save

from napari_reddino.embed.backbones import load_backbone
from training.configs import config_from_dict, load_config
from training.models.student_teacher import StudentTeacher
from training.train.checkpoint import list_checkpoints, load_checkpoint
from training.train.distributed import DistEnv
from training.train.export import export_teacher
from training.train.loop import Trainer

REPO = Path(__file__).resolve().parents[3]
SHARDED = ["run.iters=3", "run.checkpoint_format=sharded", "data.batch_size_per_gpu=2"]


@pytest.fixture(scope="module")
def one_process_sharded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dcp1")
    Trainer(load_config("tiny_cpu", [f"run.output_dir={out}", *SHARDED]), DistEnv()).fit()
    return out


@pytest.fixture(scope="module")
def fsdp_sharded(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "training", "train", "--config", "tiny_cpu", f"run.output_dir={out}",
               "run.strategy=fsdp", *SHARDED]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=170)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _reference_tokens(dcp_folder: Path, images: np.ndarray, tmp_path: Path) -> torch.Tensor:
    """The teacher's tokens at 224 px from the checkpoint's full weights (torch's converter)."""
    dcp_to_torch_save(dcp_folder, tmp_path / "reference.pt")
    full = torch.load(tmp_path / "reference.pt", weights_only=True)
    cfg = config_from_dict(load_checkpoint(dcp_folder)["config"])
    models = StudentTeacher(cfg.model, cfg.head, cfg.data.global_crop_size)
    models.load_state_dict(full["models"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    with torch.no_grad():
        return models.teacher.tokens(x)


def _converted_by_torch_cli(dcp_folder: Path, dst: Path) -> Path:
    done = subprocess.run([sys.executable, "-m", "torch.distributed.checkpoint.format_utils",
                           "dcp_to_torch", str(dcp_folder), str(dst)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return dst


def _check_every_format(run: Path, tmp_path: Path) -> None:
    [(step, dcp_folder)] = list_checkpoints(run)
    assert (step, dcp_folder.suffix) == (2, ".dcp")
    images = (np.random.default_rng(1).random((2, 224, 224, 3)) * 255).astype(np.uint8)
    expected = _reference_tokens(dcp_folder, images, tmp_path)
    sources = {"run folder": run, "dcp folder": dcp_folder,
               "dcp_to_torch file": _converted_by_torch_cli(dcp_folder, tmp_path / "conv.pt")}
    for name, source in sources.items():
        done = subprocess.run([sys.executable, "-m", "training", "export", str(source),
                               "--out", str(tmp_path / name)], cwd=REPO,
                              capture_output=True, text=True, timeout=120)  # fmt: skip
        assert done.returncode == 0, (name, done.stderr[-2000:])
        backbone = load_backbone(f"local-dir:{tmp_path / name}", device="cpu", dtype="float32")
        cls, patches = backbone.forward(images)
        np.testing.assert_allclose(cls, expected[:, 0].numpy(), rtol=1e-4, atol=1e-4,
                                   err_msg=name)  # fmt: skip
        np.testing.assert_allclose(patches, expected[:, 1:].reshape(2, 16, 16, 64).numpy(),
                                   rtol=1e-4, atol=1e-4, err_msg=name)  # fmt: skip
        provenance = (tmp_path / name / "training_config.yaml").read_text()
        assert provenance.startswith("checkpoint_step: 2\n"), name


def test_one_process_sharded_checkpoint_exports_in_every_format(one_process_sharded, tmp_path):
    _check_every_format(one_process_sharded, tmp_path)


@pytest.mark.slow
def test_fsdp_sharded_checkpoint_exports_in_every_format(fsdp_sharded, tmp_path):
    """FSDP's shards: each rank wrote half of every tensor; export reads them in one process."""
    _check_every_format(fsdp_sharded, tmp_path)


def test_converted_file_of_an_older_run_takes_the_config_beside_it(one_process_sharded, tmp_path):
    """A dcp_to_torch file without the config in its shards: the run's config.yaml is read."""
    [(_, dcp_folder)] = list_checkpoints(one_process_sharded)
    dcp_to_torch_save(dcp_folder, tmp_path / "full.pt")
    full = torch.load(tmp_path / "full.pt", weights_only=True)
    torch.save({"models": full["models"]}, tmp_path / "older.pt")
    with pytest.raises(ValueError, match=r"beside config\.yaml"):
        export_teacher(tmp_path / "older.pt", tmp_path / "nowhere")
    (tmp_path / "config.yaml").write_bytes((one_process_sharded / "config.yaml").read_bytes())
    folder = export_teacher(tmp_path / "older.pt", tmp_path / "m")
    assert (folder / "model.safetensors").is_file()
