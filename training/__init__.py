"""Pretraining of RedDino / DINOv2 ViT backbones for napari-reddino, grouped as DINOv2's trainer.

``configs`` (default.yaml + per-model overrides), ``data``, ``models``, ``losses``, ``train``
(loop, step, checkpoints, export) and ``eval``. It runs from a checkout of the repository
(``python -m training`` / ``torchrun -m training`` in its root) and is not in the wheel, so no
installed ``training`` module can collide with another. The plugin never imports it; it imports
the plugin's public core (``napari_reddino.embed.backbones`` ...) so that training, export and
the plugin share one backbone definition and one model-folder format.
"""
