"""The terms of the DINOv2 objective: image-level DINO, masked-patch iBOT, KoLeo spreading."""

from training.losses.dino import DINOLoss
from training.losses.ibot import iBOTPatchLoss
from training.losses.koleo import KoLeoLoss

__all__ = ["DINOLoss", "KoLeoLoss", "iBOTPatchLoss"]
