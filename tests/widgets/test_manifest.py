"""The npe2 manifest is valid, discovered through the entry point, and every name resolves."""

from __future__ import annotations

import importlib
from pathlib import Path

from npe2 import PluginManager, PluginManifest

import napari_reddino

MANIFEST = Path(napari_reddino.__file__).parent / "napari.yaml"


def _resolve(python_name: str):
    module_name, attr = python_name.split(":")
    return getattr(importlib.import_module(module_name), attr)


def test_manifest_file_validates():
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "napari-reddino"
    assert manifest.display_name == "RedDino"


def test_plugin_discovered_through_entry_point():
    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("napari-reddino")
    widgets = {w.display_name for w in manifest.contributions.widgets}
    assert widgets == {
        "Segment cells",
        "Embed smear (RedDino)",
        "Cell explorer (UMAP)",
        "Label & propagate",
        "Smears (show / hide)",
    }
    samples = {s.key: s.display_name for s in manifest.contributions.sample_data}
    assert samples == {
        "real_smear": "Real smear (Chula RBC-12, elliptocytosis)",
        "real_smears": "Real smears, 2 diagnoses (Chula RBC-12)",
        "synthetic_smear": "Synthetic smear",
        "synthetic_subjects": "Synthetic smears, 3 subjects",
    }


def test_readers_and_writers_are_registered(tmp_path):
    pm = PluginManager.instance()
    pm.discover()
    for path in (tmp_path, tmp_path / "cells.h5ad", tmp_path / "cells.npz"):
        readers = {r.plugin_name for r in pm.iter_compatible_readers([str(path)])}
        assert "napari-reddino" in readers, path
    assert not any(r.plugin_name == "napari-reddino"
                   for r in pm.iter_compatible_readers([str(tmp_path / "smear.png")]))
    writers = {w.command for w in pm.get_manifest("napari-reddino").contributions.writers}
    assert writers == {"napari-reddino.write_h5ad", "napari-reddino.write_run_folder"}
    from napari_reddino.plugin.reader import get_reader

    assert get_reader(str(tmp_path)) is None  # an empty folder is not ours: napari asks others


def test_real_sample_is_small_licensed_and_loads():
    from napari_reddino.plugin.samples import REAL_SMEARS, real_smears_sample

    data = Path(napari_reddino.__file__).parent / "data"
    assert sum(f.stat().st_size for f in data.iterdir()) <= 300_000
    assert "MIT License" in (data / "LICENSE-chula-rbc.txt").read_text()
    layers = real_smears_sample()
    assert [kwargs["metadata"]["subject"] for _, kwargs, _ in layers] == list(REAL_SMEARS.values())
    image = layers[0][0]
    assert image.shape == (960, 1280, 3) and image.dtype.name == "uint8"
    assert 100 < image.mean() < 250  # a bright smear background, not a blank or black file


def test_every_python_name_resolves():
    manifest = PluginManifest.from_file(MANIFEST)
    commands = manifest.contributions.commands
    assert len(commands) >= 6
    for command in commands:
        target = _resolve(command.python_name)
        assert callable(target), command.python_name
    widget_commands = {w.command for w in manifest.contributions.widgets}
    for command in commands:
        if command.id in widget_commands:
            assert isinstance(_resolve(command.python_name), type), command.python_name
