"""The terms of the DINOv2 objective and the teacher targets they are measured against.

Image-level DINO, masked-patch iBOT, KoLeo spreading, and ``centering`` (Sinkhorn-Knopp or DINO's
EMA center), which turns teacher logits into those targets.
"""

from training.losses.centering import make_centering
from training.losses.dino import DINOLoss
from training.losses.ibot import iBOTPatchLoss
from training.losses.koleo import KoLeoLoss

__all__ = ["DINOLoss", "KoLeoLoss", "iBOTPatchLoss", "make_centering"]
