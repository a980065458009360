"""training/ is not installed: the wheel ships the plugin only; the trainer runs from a checkout.

A top-level ``training`` package in site-packages would shadow (or be shadowed by) any other
module of that common name, so it stays out of the wheel and of the editable install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# only what the build reads, copied so the build leaves no build/ or egg-info in the checkout
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE", "src", "training")


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_built_wheel_holds_the_plugin_and_no_training_package(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, used without an isolated build env
    source = tmp_path / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            ignore = shutil.ignore_patterns("__pycache__", "*.egg-info")
            shutil.copytree(REPO / name, source / name, ignore=ignore)
        else:
            shutil.copy2(REPO / name, source / name)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(tmp_path / "dist")],
        capture_output=True, text=True, timeout=300, env=_clean_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("napari_reddino-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"napari_reddino", wheel.name.split("-py")[0] + ".dist-info"}, top_level
    assert "napari_reddino/napari.yaml" in names
    assert not [name for name in names if name.startswith("training")]
    # the code's licence and the bundled data's travel in the wheel, declared as SPDX
    licenses = [name for name in names if "/licenses/" in name]
    assert any(name.endswith("/licenses/LICENSE") for name in licenses), licenses
    assert any(name.endswith("LICENSE-chula-rbc.txt") for name in licenses), licenses
    metadata = zipfile.ZipFile(wheel).read(
        next(name for name in names if name.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    assert "Project-URL:" in metadata and "Operating System :: OS Independent" in metadata
    assert "Requires-Dist: umap-learn<0.6,>=0.5.6" in metadata


def test_training_is_importable_from_the_checkout_only(tmp_path):
    """The editable install (make setup) maps napari_reddino alone; the checkout's root holds
    training, which `python -m training` finds because it runs from there."""
    outside = subprocess.run([sys.executable, "-c", "import training"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=60, env=_clean_env())
    assert outside.returncode != 0
    assert "No module named 'training'" in outside.stderr
    inside = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=60, env=_clean_env())
    assert inside.returncode == 0, inside.stderr[-2000:]
    assert all(command in inside.stdout for command in ("train", "export", "patches", "eval"))
    harness = subprocess.run([sys.executable, "-m", "training.eval", "--help"], cwd=REPO,
                             capture_output=True, text=True, timeout=60, env=_clean_env())
    assert harness.returncode == 0 and "--backbone" in harness.stdout, harness.stderr[-2000:]
