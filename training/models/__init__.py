"""Trainable modules around the backbone: projection heads (and C2's student/teacher wrapper)."""

from training.models.heads import DINOHead, cancel_last_layer_gradients

__all__ = ["DINOHead", "cancel_last_layer_gradients"]
