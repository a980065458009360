"""Class sets: the ordered class names a user labels with, a color each, keys 1-9.

The default colors are safe for colour-blind users (:data:`CVD_SAFE_COLORS`, sources there).

A ``ClassSet`` is immutable (``add`` / ``rename`` / ``remove`` return a new set), so the module's
ready-made sets can be shared safely between docks. Saved as a small, hand-editable JSON file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import is_color_like, to_hex

_FORMAT = "napari-reddino-classes"
_N_SHORTCUTS = 9


# Thirteen colors a dichromat still tells apart (Chula RBC-12 has 13 classes with its
# "uncategorised"): taken from Paul Tol's qualitative schemes ("muted", "light", "vibrant";
# P. Tol, "Colour Schemes", SRON/EPS/TN/09-002, https://personal.sron.nl/~pault/) plus
# Okabe & Ito's yellow ("Color Universal Design", 2008) and white, chosen from those 39 colors
# as the 13 whose smallest pairwise CIEDE2000 difference is largest under normal vision and
# simulated deuteranopia and protanopia (Machado, Oliveira & Fernandes 2009, severity 1): >= 7
# for all 13, >= 8 for the first 9 (the old tab10 order: 1.3; its brown "target" and red
# "echinocyte" were 9.6 apart for a protanope, now 16 or more). Colors too close to a stained
# cell or napari's dark canvas were left out. Ordered farthest-first: a short set gets the
# most distinct.
CVD_SAFE_COLORS = (
    "#332288",  # Tol muted indigo
    "#f0e442",  # Okabe-Ito yellow
    "#99ddff",  # Tol light cyan
    "#117733",  # Tol muted green
    "#0077bb",  # Tol vibrant blue
    "#ee8866",  # Tol light orange
    "#ffffff",  # white
    "#33bbee",  # Tol vibrant cyan
    "#eedd88",  # Tol light yellow
    "#cc3311",  # Tol vibrant red
    "#ccbb44",  # Tol bright yellow
    "#999933",  # Tol muted olive
    "#dddddd",  # Tol light pale grey
)


def default_colors(n: int) -> list[str]:
    """``n`` distinct hex colors: the 13 colour-blind-safe ones, then (a 14th class and beyond:
    no 13-color set stays safe for dichromats) tab10, tab20's light shades, tab20b/c."""
    palette = list(CVD_SAFE_COLORS)
    for name in ("tab10", "tab20", "tab20b", "tab20c"):
        for rgba in colormaps[name].colors:
            color = to_hex(rgba)
            if color not in palette:
                palette.append(color)
    return [palette[i % len(palette)] for i in range(n)]


class ClassInUseError(ValueError):
    """Removing a class that cells still carry."""


@dataclass(frozen=True)
class ClassSet:
    """Ordered class names with a color each; the first nine get keys ``"1"`` to ``"9"``."""

    names: tuple[str, ...]
    colors: tuple[str, ...] = ()
    title: str = "custom"

    def __post_init__(self):
        names = tuple(str(n).strip() for n in self.names)
        if any(not n for n in names):
            raise ValueError("class names must be non-empty")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"class names must be unique; repeated: {duplicates}")
        colors = tuple(self.colors) or tuple(default_colors(len(names)))
        if len(colors) != len(names):
            raise ValueError(f"{len(names)} class names but {len(colors)} colors")
        bad = [c for c in colors if not is_color_like(c)]
        if bad:
            raise ValueError(f"not colors: {bad} (use names like 'red' or hex like '#ff0000')")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", tuple(to_hex(c) for c in colors))

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self):
        return iter(self.names)

    def __contains__(self, name) -> bool:
        return name in self.names

    def index(self, name: str) -> int:
        """Position of ``name``; a clear ``KeyError`` if it is not in the set."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown class {name!r}; the set has {list(self.names)}") from None

    def color_of(self, name: str) -> str:
        return self.colors[self.index(name)]

    @property
    def color_map(self) -> dict[str, str]:
        """Class name -> hex color (for napari's ``face_color`` / label colors)."""
        return dict(zip(self.names, self.colors))

    @property
    def shortcuts(self) -> dict[str, str]:
        """Keyboard key -> class name for the first nine classes."""
        return {str(i + 1): n for i, n in enumerate(self.names[:_N_SHORTCUTS])}

    def shortcut_of(self, name: str) -> str | None:
        i = self.index(name)
        return str(i + 1) if i < _N_SHORTCUTS else None

    def add(self, name: str, color: str | None = None) -> ClassSet:
        """A new set with ``name`` appended (next palette color unless given)."""
        name = str(name).strip()
        if name in self.names:
            raise ValueError(f"class {name!r} already exists")
        if color is None:
            unused = [c for c in default_colors(len(self) + 20) if c not in self.colors]
            color = unused[0]
        return ClassSet((*self.names, name), (*self.colors, color), self.title)

    def rename(self, old: str, new: str) -> ClassSet:
        """A new set with ``old`` renamed (recode the cells' column with :func:`recode`)."""
        i = self.index(old)
        names = list(self.names)
        names[i] = new
        return ClassSet(tuple(names), self.colors, self.title)

    def remove(self, name: str, in_use: Iterable | None = None) -> ClassSet:
        """A new set without ``name``; refuses while ``in_use`` (the cells' class column) has it."""
        i = self.index(name)
        if in_use is not None:
            count = int((pd.Series(list(in_use), dtype=object) == name).sum())
            if count:
                raise ClassInUseError(
                    f"cannot remove class {name!r}: {count} cell(s) are labeled with it; "
                    "relabel or clear them first"
                )
        keep = [j for j in range(len(self)) if j != i]
        return ClassSet(
            tuple(self.names[j] for j in keep), tuple(self.colors[j] for j in keep), self.title
        )

    def to_dict(self) -> dict:
        return {
            "format": _FORMAT,
            "version": 1,
            "title": self.title,
            "classes": [{"name": n, "color": c} for n, c in zip(self.names, self.colors)],
        }

    def save(self, path) -> Path:
        """Write the set as JSON atomically (a failed write keeps the previous file)."""
        from napari_reddino.io.atomic import write_text

        return write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", "class set")

    @classmethod
    def load(cls, path) -> ClassSet:
        """Read a set written by :meth:`save`; a clear ``ValueError`` for anything else."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FileNotFoundError(f"class set file not found: {path}") from None
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON: {err}") from None
        if not isinstance(data, dict) or data.get("format") != _FORMAT:
            raise ValueError(f"{path} is not a napari-reddino class set (missing 'format')")
        entries = data.get("classes")
        if not isinstance(entries, list) or not all(
            isinstance(e, dict) and "name" in e for e in entries
        ):
            raise ValueError(f"{path}: 'classes' must be a list of {{'name', 'color'}} objects")
        colors = tuple(e.get("color") for e in entries)
        return cls(
            tuple(e["name"] for e in entries),
            () if any(c is None for c in colors) else colors,
            str(data.get("title", path.stem)),
        )


def recode(column: Sequence, old: str, new: str) -> pd.Series:
    """The cells' class column with ``old`` renamed to ``new`` (pairs with :meth:`rename`)."""
    series = pd.Series(list(column), dtype=object)
    return series.where(series != old, new)


# The synthetic generator's classes (synthetic.smear.RBC_CLASSES + DISTRACTOR_CLASSES).
DEFAULT_CLASS_SET = ClassSet(
    (
        "discocyte", "spherocyte", "elliptocyte", "echinocyte", "stomatocyte", "target",
        "dacrocyte", "sickle", "schistocyte", "wbc", "platelet",
    ),
    title="synthetic",
)
# Chula RBC-12 (Naruenatthanaset et al. 2021): the 12 RBC classes of the dataset's label files.
CHULA_CLASS_SET = ClassSet(
    (
        "normal", "macrocyte", "microcyte", "spherocyte", "target cell", "stomatocyte",
        "ovalocyte", "teardrop", "burr cell", "schistocyte", "hypochromia", "elliptocyte",
    ),
    title="chula",
)
# Shape categories in the style of Elsafty et al. (2023, RBC shapes). The exact category names
# could not be checked offline: verify against the dataset and rename with ClassSet.rename.
ELSAFTY_CLASS_SET = ClassSet(
    (
        "circular", "elongated", "crenated", "teardrop", "target", "stomatocyte",
        "spherocyte", "fragmented", "other",
    ),
    title="elsafty",
)
CLASS_SETS = {s.title: s for s in (DEFAULT_CLASS_SET, CHULA_CLASS_SET, ELSAFTY_CLASS_SET)}
