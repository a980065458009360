"""Finding and reading smear image files, with a message that says what is wrong and what to do.

A leaf module (numpy, pandas, Pillow, tifffile; nothing of the package but ``segment``'s
validation): the CLI, the dask workers and the pipeline read images only through here, so a text
file, a truncated PNG or a channels-first TIFF gets the same clear message everywhere.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
#: Longest output name made from an image name: room for suffixes, staging prefixes and the
#: 255-byte limit of common file systems (ext4, APFS, NTFS).
MAX_NAME = 120


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


def safe_name(name: str, limit: int = MAX_NAME) -> str:
    """``name`` if it is safe as a file name anywhere, else the name made safe (and cut to
    ``limit``) plus ``~`` and a hash of the real name: a safe name never contains ``~``, so
    ``a b.png`` and ``a_b.png`` (or two long names alike at the start) never collide, and no
    name can leave its folder (``/``, ``..``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    if safe == name and safe not in ("", ".", "..") and len(safe) <= limit:
        return safe
    digest = hashlib.sha1(name.encode("utf-8", "surrogateescape")).hexdigest()[:10]
    return f"{safe[: limit - len(digest) - 1]}~{digest}"


def output_stems(images: list[Path]) -> dict[str, str]:
    """File name -> the safe stem its outputs are named by, unique within ``images``.

    The stem where no other image shares it (``y.png`` -> ``y``), else the whole file name
    (``y.png`` and ``y.tif`` -> ``y.png``, ``y.tif``), so one image never overwrites another's.
    """
    stems = [p.stem for p in images]
    chosen = {p.name: safe_name(p.stem if stems.count(p.stem) == 1 else p.name) for p in images}
    values = list(chosen.values())
    for name, stem in chosen.items():  # e.g. "y.png.tif" (stem y.png) beside "y.png", "y.tif"
        if values.count(stem) > 1:
            chosen[name] = safe_name(name + "\0")  # changed, so hashed: unique
    return chosen


_PIL_TO_ARRAY = {"CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "RGBX": "RGB",
                 "P": "RGBA", "PA": "RGBA", "LA": "L", "La": "L", "RGBa": "RGBA"}


def _read_pil(path: Path) -> np.ndarray:
    """A PNG / JPEG / BMP as an array RGB-like validate_image understands (CMYK, palette,
    gray + alpha converted; 16-bit gray kept as uint16)."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        mode = im.mode
        if mode in _PIL_TO_ARRAY:
            im = im.convert(_PIL_TO_ARRAY[mode])
        elif mode not in ("1", "L", "RGB", "RGBA", "I", "F") and not mode.startswith("I;16"):
            raise PipelineInputError(f"{path.name}: unsupported image mode {mode!r}; save it as "
                                     "an 8-bit RGB PNG, JPEG or TIFF")
        return np.asarray(im)


def _read_tiff(path: Path) -> np.ndarray:
    """A TIFF as an array; CMYK (separated) and palette TIFFs converted to RGB."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        data = tif.asarray()
        photometric = int(page.photometric)
        if photometric == tifffile.PHOTOMETRIC.SEPARATED:
            if data.ndim != 3 or data.shape[-1] < 4:
                raise PipelineInputError(f"{path.name}: a separated (ink) TIFF that is not "
                                         "CMYK; save it as RGB")
            ink = data[..., :4].astype(np.float32) / float(np.iinfo(data.dtype).max
                                                          if data.dtype.kind in "ui" else 1.0)
            data = (255 * (1 - ink[..., :3]) * (1 - ink[..., 3:4]) + 0.5).astype(np.uint8)
        elif photometric == tifffile.PHOTOMETRIC.PALETTE and page.colormap is not None:
            colormap = np.asarray(page.colormap).T  # (n, 3), 16-bit
            data = (colormap[data] >> 8).astype(np.uint8)
    return data


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a smear photo as (H, W, 3) uint8, with a clear error for unreadable files.

    Color models other than RGB are converted (CMYK, palette, gray + alpha) rather than read
    as channels: a CMYK JPEG read raw would pass as RGBA with wrong colors.
    """
    from napari_reddino.io.image_checks import validate_image

    path = Path(path)
    if not path.is_file():
        raise PipelineInputError(f"{path}: no such image file")
    try:
        tiff = path.suffix.lower() in (".tif", ".tiff")
        data = _read_tiff(path) if tiff else _read_pil(path)
    except PipelineInputError:
        raise
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
    try:  # blank lines kept (and dropped below) so that row i is line i + 2 of the file
        table = pd.read_csv(path, dtype=str, skip_blank_lines=False)
    except Exception as exc:
        raise PipelineInputError(f"{path}: cannot read subject CSV ({exc})") from exc
    missing_cols = {"image", "subject"} - set(table.columns)
    if missing_cols:
        raise PipelineInputError(
            f"{path}: subject CSV needs columns 'image' and 'subject', "
            f"missing {sorted(missing_cols)}"
        )
    by_name = _subject_rows(path, table)
    mapping = {}
    for p in images:
        subject = by_name.get(p.name, by_name.get(p.stem))
        if subject is None:
            raise PipelineInputError(f"{path}: no subject for image {p.name!r}")
        mapping[p.name] = subject
    return mapping


def _subject_rows(path, table: pd.DataFrame) -> dict[str, str]:
    """``image -> subject`` of a subject CSV; an empty cell or an image listed twice is refused
    with its line (a silent "nan" subject or last-wins would mix smears up)."""
    image = table["image"].fillna("").str.strip()
    subject = table["subject"].fillna("").str.strip()
    by_name: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for row, (name, who) in enumerate(zip(image, subject)):
        line = row + 2  # line 1 is the header
        if not name and not who:
            continue  # a blank line
        if not name or not who:
            raise PipelineInputError(
                f"{path}, line {line}: empty {'image' if not name else 'subject'} "
                f"(image {name!r}, subject {who!r}); give every image a subject, or remove "
                "the line")
        if name in by_name:
            raise PipelineInputError(
                f"{path}, line {line}: image {name!r} is listed twice (lines "
                f"{first_line[name]} and {line}); keep one line per image")
        by_name[name], first_line[name] = who, line
    return by_name
