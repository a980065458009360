"""Any array in, an (H, W, 3) uint8 RGB smear out, or a message that says what is wrong.

A leaf module (numpy only): segmentation, Cellpose, embedding and cell pooling all validate their
input here, so none of them imports another for it. ``segment`` and ``embed`` re-export these.
"""

from __future__ import annotations

import numpy as np

MIN_SIDE = 8


class InputError(ValueError):
    """The image cannot be segmented as given; the message says why and what is expected."""


def _to_float(data: np.ndarray) -> np.ndarray:
    values = data.astype(np.float32)
    finite = np.isfinite(values)
    if not finite.any():
        raise InputError("the image has no finite pixel values (all NaN or infinite)")
    if not finite.all():  # 0 would read as a dark, stained object: fill with the typical value
        values[~finite] = np.median(values[finite])
    return values


def validate_image(data) -> np.ndarray:
    """Return ``data`` as an (H, W, 3) uint8 RGB smear, or raise :class:`InputError`.

    Accepts gray (H, W) or (H, W, 1), RGB, RGBA (alpha dropped), bool, 8/16/32-bit integers
    and floats (rescaled to 0-255: floats <= 1 are taken as [0, 1], other ranges by their
    maximum, negative data by its min-max). NaN/inf become the median of the finite pixels.
    """
    try:
        array = np.asarray(data)
    except Exception as exc:  # e.g. a ragged list
        raise InputError(f"cannot read the image as an array: {exc}") from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == bool):
        raise InputError(f"the image must hold numbers, got dtype {array.dtype}")
    if np.iscomplexobj(array):
        raise InputError(f"the image holds complex numbers ({array.dtype}); pass real pixel "
                         "values, e.g. np.abs(image) for a magnitude image")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    elif array.ndim == 3 and array.shape[0] in (3, 4) and min(array.shape[1:]) > 4:
        raise InputError(f"the image looks channels-first {array.shape}; transpose it to "
                         f"(H, W, C) first, e.g. np.moveaxis(image, 0, -1)")
    elif array.ndim != 3 or array.shape[2] not in (3, 4):
        raise InputError(f"expected a 2D gray or (H, W, 3|4) colour image, got shape "
                         f"{array.shape}; pick one plane of a stack before segmenting")
    if min(array.shape[:2]) < MIN_SIDE:
        raise InputError(f"the image is {array.shape[0]}x{array.shape[1]} pixels; a smear "
                         f"needs at least {MIN_SIDE}x{MIN_SIDE}")
    array = array[..., :3]
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    values = _to_float(array)
    low, high = float(values.min()), float(values.max())
    if np.issubdtype(array.dtype, np.floating) and low >= 0 and high <= 1.0:
        scale, offset = 255.0, 0.0
    elif low >= 0:
        scale, offset = (255.0 / high if high > 255 else 1.0), 0.0
    else:
        scale, offset = 255.0 / max(high - low, 1e-12), -low
    return np.clip((values + offset) * scale + 0.5, 0, 255).astype(np.uint8)


def check_image(image):
    """Validate an in-memory image fully; lazy ones (dask, zarr, memmap) only by shape."""
    if isinstance(image, np.ndarray) and not isinstance(image, np.memmap):
        return validate_image(image)
    shape = getattr(image, "shape", None)
    if shape is None or len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {shape}")
    if min(shape[:2]) < 2:
        raise ValueError(f"image is too small to embed: {shape}")
    return image
