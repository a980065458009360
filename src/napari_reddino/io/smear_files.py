"""Finding and reading smear image files, with a message that says what is wrong and what to do.

A leaf module (numpy, pandas, imageio, tifffile; nothing of the package but ``segment``'s
validation): the CLI, the dask workers and the pipeline read images only through here, so a text
file, a truncated PNG or a channels-first TIFF gets the same clear message everywhere.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class PipelineInputError(ValueError):
    """A smear that cannot be processed (unreadable file, bad image): the message says why."""


def _looks_like_text(path: Path) -> bool:
    head = path.read_bytes()[:2048] if path.stat().st_size else b""
    if not head or b"\0" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a smear photo as (H, W, 3) uint8, with a clear error for unreadable files."""
    import imageio.v3 as iio

    from napari_reddino.io.image_checks import validate_image

    path = Path(path)
    if not path.is_file():
        raise PipelineInputError(f"{path}: no such image file")
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            data = iio.imread(path)
    except Exception as exc:  # any decoder error means the same thing to the user
        if _looks_like_text(path):
            raise PipelineInputError(
                f"{path.name}: this is a text file, not an image; pass PNG, JPEG, TIFF or BMP "
                "smear photos") from exc
        raise PipelineInputError(
            f"{path.name}: cannot read image (damaged, or not a PNG, JPEG, TIFF or BMP file; "
            f"the decoder said {type(exc).__name__})") from exc
    try:
        return validate_image(np.asarray(data))
    except ValueError as exc:
        raise PipelineInputError(f"{path.name}: {exc}") from exc


def find_images(inputs: list[str | os.PathLike]) -> list[Path]:
    """Expand folders and glob patterns to a sorted list of image files; clear error if none."""
    found: list[Path] = []
    for item in inputs:
        text = str(item)
        path = Path(text)
        if path.is_dir():
            found += [p for p in sorted(path.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        elif path.is_file():
            found.append(path)
        elif any(ch in text for ch in "*?["):
            found += sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        else:
            raise PipelineInputError(f"{text}: no such file, folder or matching pattern")
    if not found:
        raise PipelineInputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) found in {inputs}")
    names = [p.name for p in found]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineInputError(
            f"image file names must be unique (they key the cells): duplicated {duplicates}"
        )
    return found


def read_subject_map(path: str | os.PathLike | None, images: list[Path]) -> dict[str, str]:
    """Image file name -> subject, from a CSV with ``image,subject`` columns.

    Without a CSV the subject is the image's parent folder name (one folder per subject).
    """
    if path is None:
        return {p.name: p.parent.name or "unknown" for p in images}
    try:
        table = pd.read_csv(path, dtype=str)
    except Exception as exc:
        raise PipelineInputError(f"{path}: cannot read subject CSV ({exc})") from exc
    missing_cols = {"image", "subject"} - set(table.columns)
    if missing_cols:
        raise PipelineInputError(
            f"{path}: subject CSV needs columns 'image' and 'subject', "
            f"missing {sorted(missing_cols)}"
        )
    by_name = dict(zip(table["image"].str.strip(), table["subject"].str.strip()))
    mapping = {}
    for p in images:
        subject = by_name.get(p.name, by_name.get(p.stem))
        if subject is None:
            raise PipelineInputError(f"{path}: no subject for image {p.name!r}")
        mapping[p.name] = subject
    return mapping
