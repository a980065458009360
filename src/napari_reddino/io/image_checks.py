"""Any array in, an (H, W, 3) uint8 RGB smear out, or a message that says what is wrong.

A leaf module (numpy only): segmentation, Cellpose, embedding and cell pooling all validate their
input here, so none of them imports another for it. ``segment`` and ``embed`` re-export these.
"""

from __future__ import annotations

import numpy as np

MIN_SIDE = 8


class InputError(ValueError):
    """The image cannot be segmented as given; the message says why and what is expected."""


def _to_float(data: np.ndarray, fill: float | None = None) -> np.ndarray:
    values = data.astype(np.float32, copy=False)
    finite = np.isfinite(values)
    if finite.all():
        return values
    if fill is None:
        if not finite.any():
            raise InputError("the image has no finite pixel values (all NaN or infinite)")
        fill = float(np.median(values[finite]))
    # 0 would read as a dark, stained object: fill with the typical value (never in place)
    return np.where(finite, values, np.float32(fill))


def _check_layout(shape: tuple, dtype: np.dtype) -> None:
    """Raise :class:`InputError` for a dtype or shape that is no smear (reads no pixel)."""
    if dtype.kind not in "biufc":  # bool, integers, floats (complex: refused below)
        raise InputError(f"the image must hold numbers, got dtype {dtype}")
    if dtype.kind == "c":
        raise InputError(f"the image holds complex numbers ({dtype}); pass real pixel "
                         "values, e.g. np.abs(image) for a magnitude image")
    ndim = len(shape)
    if (ndim == 3 and shape[2] == 1) or ndim == 2:
        pass
    elif ndim == 3 and shape[0] in (3, 4) and min(shape[1:]) > 4:
        raise InputError(f"the image looks channels-first {tuple(shape)}; transpose it to "
                         f"(H, W, C) first, e.g. np.moveaxis(image, 0, -1)")
    elif ndim != 3 or shape[2] not in (3, 4):
        raise InputError(f"expected a 2D gray or (H, W, 3|4) color image, got shape "
                         f"{tuple(shape)}; pick one plane of a stack before segmenting")
    if min(shape[:2]) < MIN_SIDE:
        raise InputError(f"the image is {shape[0]}x{shape[1]} pixels; a smear "
                         f"needs at least {MIN_SIDE}x{MIN_SIDE}")


def _as_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    return array[..., :3]


def _scale(dtype: np.dtype, low: float, high: float) -> tuple[float, float]:
    """(scale, offset) to 0-255: floats <= 1 as [0, 1], others by their maximum or min-max."""
    if np.issubdtype(dtype, np.floating) and low >= 0 and high <= 1.0:
        return 255.0, 0.0
    if low >= 0:
        return (255.0 / high if high > 255 else 1.0), 0.0
    return 255.0 / max(high - low, 1e-12), -low


def _to_uint8(array: np.ndarray, dtype: np.dtype, low: float, high: float, fill) -> np.ndarray:
    if dtype.kind == "u" and dtype.itemsize == 1:
        return np.ascontiguousarray(array)
    if dtype.kind == "b":
        return array.astype(np.uint8) * 255
    scale, offset = _scale(dtype, low, high)
    values = _to_float(array, fill)
    return np.clip((values + offset) * scale + 0.5, 0, 255).astype(np.uint8)


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
    _check_layout(array.shape, array.dtype)
    array = _as_rgb(array)
    if array.dtype in (np.uint8, bool):
        return _to_uint8(array, array.dtype, 0.0, 255.0, None)
    values = _to_float(array)
    return _to_uint8(values, array.dtype, float(values.min()), float(values.max()), None)


def is_lazy(image) -> bool:
    """True for arrays that live on disk or are computed on demand (dask, zarr, memmap)."""
    return not isinstance(image, np.ndarray) or isinstance(image, np.memmap)


class LazyImage:
    """A lazy smear read window by window as (h, w, 3) uint8, never whole.

    The 0-255 scaling of non-uint8 data needs the global range: one pass over row strips of
    at most ``strip_pixels`` pixels finds it (and the median that replaces NaN, from a sample).
    """

    def __init__(self, data, strip_pixels: int = 1 << 22):
        shape, dtype = getattr(data, "shape", None), getattr(data, "dtype", None)
        if shape is None or dtype is None:
            raise InputError(f"cannot read the image as an array: {type(data).__name__} has "
                             "no shape or dtype")
        self.data, self.dtype = data, np.dtype(dtype)
        _check_layout(tuple(shape), self.dtype)
        self.shape = (int(shape[0]), int(shape[1]))
        self.low, self.high, self.fill = 0.0, 255.0, None
        if self.dtype not in (np.uint8, bool):
            self._find_range(max(1, strip_pixels // self.shape[1]))

    def _find_range(self, rows: int) -> None:
        low, high, nonfinite = np.inf, -np.inf, False
        for y in range(0, self.shape[0], rows):
            values = np.asarray(self.data[y : y + rows]).astype(np.float32)
            finite = np.isfinite(values)
            nonfinite |= not finite.all()
            if finite.any():
                low = min(low, float(values[finite].min()))
                high = max(high, float(values[finite].max()))
        if not np.isfinite(low):
            raise InputError("the image has no finite pixel values (all NaN or infinite)")
        self.low, self.high = low, high
        if nonfinite:  # the median of a strided sample: close enough to fill a few bad pixels
            step = max(1, int(np.sqrt(self.shape[0] * self.shape[1] / 1e6)))
            sample = np.asarray(self.data[::step, ::step]).astype(np.float32)
            self.fill = float(np.median(sample[np.isfinite(sample)]))

    def window(self, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] as (h, w, 3) uint8, scaled like :func:`validate_image`."""
        raw = _as_rgb(np.asarray(self.data[y0:y1, x0:x1]))
        return _to_uint8(raw, self.dtype, self.low, self.high, self.fill)


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
