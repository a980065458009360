"""The pretrained iBOT mask token is downloaded once per node, not by every rank at once.

Two Gloo ranks of one node read DINOv2's mask token from a (local, file://) copy of its
torch.hub checkpoint into a shared torch.hub cache. Each download is recorded and held open a
moment, long enough for a second rank to start its own if it did not wait for the first.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[3]
WORKER = """
import json, os, sys, time
import torch
import torch.hub
from training.models import student_teacher
from training.train.distributed import cleanup, init_distributed

env = init_distributed("cpu")
record, real = sys.argv[1], torch.hub.download_url_to_file

def recorded(url, dst, *args, **kwargs):
    with open(record, "a") as handle:
        handle.write(os.environ["LOCAL_RANK"] + "\\n")
    time.sleep(1.5)  # a rank that does not wait starts its own download meanwhile
    return real(url, dst, *args, **kwargs)

torch.hub.download_url_to_file = recorded
student_teacher._DINOV2_HUB = sys.argv[2]
token = student_teacher.pretrained_mask_token("dinov2-small", 384)
torch.save(token, f"{sys.argv[3]}/token_{env.rank}.pt")
cleanup()
"""


def test_mask_token_is_downloaded_once_per_node(tmp_path):
    token = torch.randn(1, 384)
    hub = tmp_path / "hub" / "dinov2_vits14"
    hub.mkdir(parents=True)
    torch.save({"mask_token": token, "cls_token": torch.zeros(1, 1, 384)},
               hub / "dinov2_vits14_pretrain.pth")  # fmt: skip
    url = f"file://{tmp_path}/hub/dinov2_vit{{0}}14/dinov2_vit{{0}}14_pretrain.pth"
    (tmp_path / "worker.py").write_text(WORKER)
    record = tmp_path / "downloads.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TORCH_HOME": str(tmp_path / "torch_home"),
           "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(tmp_path / "worker.py"), str(record), url, str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert record.read_text().split() == ["0"]  # local rank 0 downloaded; rank 1 read its copy
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"token_{rank}.pt"), token)
