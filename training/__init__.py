"""Pretraining of RedDino / DINOv2 ViT backbones for napari-reddino (``torchrun -m training``).

Never imported by the plugin; it imports ``napari_reddino.embed.backbones`` so that training, export
and the plugin share one backbone definition and one model-folder format.
"""
