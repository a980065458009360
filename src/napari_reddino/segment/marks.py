"""Marks drawn onto a smear photograph (arrows, text, scale bars): colors no stain makes.

A stained object only takes light away, and every dye of a Romanowsky stain (eosin, azure,
haemoglobin) absorbs green most or nearly most: pink cells and violet nuclei are dark in green.
Software marks are pure colors that pass green: a yellow arrow keeps red and green at the glass
level and blackens blue; a green or cyan scale bar blackens red and keeps green. So a pixel is
*drawn* when one channel is nearly black, another is at the glass level and green is far less dark
than the darkest channel (a pure blue or red mark is a stain's color and is not told apart). Each
drawn pixel is grown by a few pixels (JPEG blurs colors over an 8 x 8 block and the stain
density is smoothed), so no halo of the mark is left to be read as stain.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from napari_reddino.segment.density import channel_density

MARK_DARK = 1.2  # one channel's optical density above this (under 30 % of the glass) ...
MARK_CLEAR = 0.15  # ... while another's stays below this (over 86 % of the glass) ...
MARK_GREEN = 0.3  # ... and green's is under this share of the darkest (no stain passes green)
MARK_HALO = 3  # pixels added around drawn pixels (JPEG chroma blur, the density's smoothing)
MARK_MIN_PIXELS = 12  # fewer drawn pixels are noise, not a mark


def drawn_marks(rgb: np.ndarray) -> np.ndarray:
    """Boolean map of pixels covered by a drawn mark (and its halo); all False on most smears."""
    density = np.stack([channel_density(rgb, c) for c in range(3)], axis=-1)
    darkest = density.max(axis=-1)
    drawn = ((darkest > MARK_DARK) & (density.min(axis=-1) < MARK_CLEAR)
             & (density[..., 1] < MARK_GREEN * darkest))
    if int(drawn.sum()) < MARK_MIN_PIXELS:
        return np.zeros(rgb.shape[:2], bool)
    pieces, n = ndimage.label(drawn, structure=np.ones((3, 3), bool))
    sizes = np.bincount(pieces.ravel(), minlength=n + 1)
    keep = sizes >= 3  # single JPEG-ringing pixels are not marks
    keep[0] = False
    drawn = keep[pieces]
    if not drawn.any():
        return drawn
    return ndimage.binary_dilation(drawn, iterations=MARK_HALO)


def erase_marks(rgb: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """``rgb`` with drawn pixels painted the glass color (the same array when there are none).

    A yellow arrow is brighter than the glass in red and green: left in, it lifts the estimate
    of the glass around it and every cell nearby reads as densely stained.
    """
    if not marks.any():
        return rgb
    gray = rgb.mean(axis=-1)
    clear = ~marks & (gray >= np.percentile(gray[~marks], 80))
    out = rgb.copy()
    out[marks] = np.median(rgb[clear], axis=0).astype(rgb.dtype)
    return out
