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
    }
    samples = {s.key: s.display_name for s in manifest.contributions.sample_data}
    assert samples == {
        "synthetic_smear": "Synthetic smear",
        "synthetic_subjects": "Synthetic smears, 3 subjects",
    }


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
