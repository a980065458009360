"""The label autosave as an append-only journal: one line per change, never rewritten.

Why a journal: an autosave that rewrites its file from the open smears erases the labels of every
smear that is not open (restoring with half of the smears loaded used to do exactly that). Here a
change appends one line ``image, label, class, centroid_y, centroid_x, ok`` (an empty class clears
the cell) and reading keeps the last line per cell, so labels of smears that are not loaded stay
in the file untouched. ``ok`` is written last: a line cut short by a crash has no ``ok`` and is
ignored (the next record starts on a new line, never glued onto it), so a crash loses at most
the change being written; undecodable lines (a garbage tail) are skipped and counted, and every
readable line is still restored. Older autosaves (``image, label, class`` rewritten whole) read
the same way.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.io.atomic import replacing
from napari_reddino.names import (
    CENTROID_X,
    CENTROID_Y,
    CLASS,
    CLASS_SOURCE,
    CONFIDENCE,
    IMAGE,
    LABEL,
    MANUAL,
)

AUTOSAVE_COLUMNS = (IMAGE, LABEL, CLASS)
JOURNAL_COLUMNS = (IMAGE, LABEL, CLASS, CENTROID_Y, CENTROID_X, "ok")
MOVED_PX = 4.0  # a cell whose centroid moved more than this is another cell (re-segmented)

Key = tuple  # (image, label, rounded centroid_y, rounded centroid_x) or (image, label)


def _blank(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or not str(value).strip()


def _key(image, label, cy=None, cx=None) -> Key:
    if cy is None or cx is None or _blank(cy) or _blank(cx):
        return (str(image), int(label))
    return (str(image), int(label), round(float(cy)), round(float(cx)))


def is_journal(path) -> bool:
    """True if ``path`` is an autosave (journal or the older image,label,class file)."""
    try:  # the header line only: a damaged tail must not hide an autosave
        with open(path, "rb") as handle:
            first = handle.readline().decode("utf-8")
        columns = next(csv.reader([first]), [])
    except (ValueError, OSError, csv.Error):
        return False
    return [c.strip() for c in columns[:3]] == list(AUTOSAVE_COLUMNS)


def _journal_rows(path: Path) -> tuple[list[str], list[list[str]], int]:
    """``(header, rows, skipped)``: the file's CSV rows, undecodable or malformed lines left out
    and counted, so that damage in one place (a cut line, a garbage tail) costs only itself."""
    lines, skipped = [], 0
    with open(path, "rb") as handle:
        for raw in handle:
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                text = "\x00"
            if "\x00" in text:  # not text: a garbage tail, a block of a damaged disk
                skipped += 1
            else:
                lines.append(text)
    rows = list(csv.reader(lines))
    header = rows[0] if rows else []
    body = []
    for row in rows[1:]:
        if not any(field.strip() for field in row):
            continue  # an empty line
        if len(row) != len(header) or ("ok" in header and row[header.index("ok")] != "1"):
            skipped += 1  # a line cut short by a crash (no final 'ok') or glued to one
            continue
        body.append(row)
    return header, body, skipped


def read_journal(path) -> pd.DataFrame:
    """The labels of an autosave: last line per cell, cleared cells dropped.

    Columns ``image, label, class, centroid_y, centroid_x, class_source, confidence``. Lines
    that cannot be read are skipped; their count is in ``frame.attrs["skipped_lines"]`` and a
    warning names it (napari shows warnings), every readable line is restored.
    """
    path = Path(path)
    try:
        header, rows, skipped = _journal_rows(path)
    except (csv.Error, OSError) as exc:
        raise ValueError(f"{path.name} is not a label autosave file ({exc})") from exc
    missing = [c for c in AUTOSAVE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"{path.name} is not a label autosave file: it lacks {missing}")
    raw = pd.DataFrame(rows, columns=header, dtype=str)
    for column in (CENTROID_Y, CENTROID_X):
        raw[column] = pd.to_numeric(raw[column], errors="coerce") if column in raw else np.nan
    raw[LABEL] = pd.to_numeric(raw[LABEL], errors="coerce")
    skipped += int(raw[LABEL].isna().sum())
    raw = raw[raw[LABEL].notna()]
    state: dict[Key, tuple] = {}
    for row in zip(raw[IMAGE], raw[LABEL].astype(int), raw[CLASS], raw[CENTROID_Y],
                   raw[CENTROID_X]):
        _apply(state, row)
    frame = pd.DataFrame(list(state.values()),
                         columns=[IMAGE, LABEL, CLASS, CENTROID_Y, CENTROID_X])
    frame = frame.astype({LABEL: "int64", CENTROID_Y: float, CENTROID_X: float})
    frame = frame.assign(**{CLASS_SOURCE: MANUAL, CONFIDENCE: 1.0}).reset_index(drop=True)
    frame.attrs["skipped_lines"] = skipped
    if skipped:
        warnings.warn(f"label autosave {path}: {skipped} unreadable line(s) skipped (cut short "
                      f"or damaged); the {len(raw)} readable line(s) were restored", stacklevel=2)
    return frame


def _apply(state: dict[Key, tuple], row: tuple) -> None:
    """One journal line onto the labels: the last line per cell wins. A line without a
    position stands for whatever cell has that label, so it replaces (or clears) them all."""
    image, label, name, cy, cx = row
    key = _key(image, label, cy, cx)
    if len(key) == 4:
        state.pop(key[:2], None)  # the same cell, recorded before its position was known
    else:
        for other in [k for k in state if k[:2] == key]:
            del state[other]
    if _blank(name):
        state.pop(key, None)
    else:
        state[key] = (str(image), int(label), str(name), cy, cx)


class Autosaver:
    """Appends every manual-label change to a CSV journal (see the module docstring).

    :meth:`record` one click, or :meth:`sync` with the combined table: only the smears in that
    table are compared, and a saved label is cleared only when its very cell (same label at the
    same place) is there without it. :meth:`restore` gives the labels for ``merge_labels``.
    """

    def __init__(self, path):
        self.path = Path(path)
        if self.path.suffix.lower() != ".csv":
            raise ValueError(f"the autosave file must be a .csv, got '{self.path.name}'")
        self._labels: dict[Key, tuple] = {}  # key -> (image, label, class, cy, cx)
        if self.path.exists() and self.path.stat().st_size:
            for row in read_journal(self.path).itertuples(index=False):
                image, label, name, cy, cx = row[:5]
                self._labels[_key(image, label, cy, cx)] = (image, int(label), name, cy, cx)

    def __len__(self) -> int:
        return len(self._labels)

    def record(self, image: str, label: int, class_name: str | None, *,
               centroid: tuple[float, float] | None = None) -> None:
        """Set (or with ``None`` / ``""`` clear) one cell's manual label and save."""
        cy, cx = centroid if centroid is not None else (np.nan, np.nan)
        self._append([(str(image), int(label), class_name, cy, cx)])

    def sync(self, features: pd.DataFrame) -> None:
        """Journal the differences between the saved labels and ``features``' manual labels."""
        cy = features[CENTROID_Y] if CENTROID_Y in features else pd.Series(np.nan, features.index)
        cx = features[CENTROID_X] if CENTROID_X in features else pd.Series(np.nan, features.index)
        manual = (features[CLASS_SOURCE].astype(str) == MANUAL) & ~features[CLASS].map(_blank)
        present: dict[tuple[str, int], tuple[float, float]] = {}
        wanted: dict[Key, tuple] = {}
        for image, label, name, y, x, is_manual in zip(
            features[IMAGE].astype(str), features[LABEL], features[CLASS], cy, cx, manual
        ):
            present[(image, int(label))] = (float(y), float(x))
            if is_manual:
                wanted[_key(image, label, y, x)] = (image, int(label), str(name), y, x)
        changes = [row for key, row in wanted.items() if self._labels.get(key, ())[2:3] !=
                   (row[2],)]
        relabeled = {key[:2] for key in wanted}
        for key, (image, label, _name, y, x) in self._labels.items():
            if key in wanted or (len(key) == 2 and key in relabeled):
                continue  # still labeled (now with its position)
            if (image, label) not in present:
                continue  # its smear (or this cell) is not loaded: keep the label
            py, px = present[(image, label)]
            same_place = np.isnan(y) or np.hypot(py - y, px - x) <= MOVED_PX
            if same_place:  # its very cell is loaded without the label: the user cleared it
                changes.append((image, label, None, y, x))
        self._append(changes)

    def frame(self) -> pd.DataFrame:
        """The saved manual labels as a table with ``class_source = "manual"``."""
        rows = sorted(self._labels.values(), key=lambda r: (r[0], r[1]))
        frame = pd.DataFrame(rows, columns=[IMAGE, LABEL, CLASS, CENTROID_Y, CENTROID_X])
        frame = frame.astype({LABEL: "int64", CENTROID_Y: float, CENTROID_X: float})
        return frame.assign(**{CLASS_SOURCE: MANUAL, CONFIDENCE: 1.0})

    def restore(self) -> pd.DataFrame:
        """Read the autosave file back (image, label, class, centroids, source, confidence)."""
        if not self.path.exists() or not self.path.stat().st_size:
            return self.frame().iloc[:0]
        return read_journal(self.path)

    def _append(self, rows: list[tuple]) -> None:
        if not rows and self.path.exists():
            return
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        new_file = not self.path.exists() or not self.path.stat().st_size
        if not new_file and not is_journal_with_ok(self.path):
            self._upgrade()  # an older whole-file autosave: rewrite it once as a journal
            new_file = False
        if new_file:
            writer.writerow(JOURNAL_COLUMNS)
        for image, label, name, cy, cx in rows:
            writer.writerow([image, label, "" if _blank(name) else name, _num(cy), _num(cx), 1])
            _apply(self._labels, (image, label, name, cy, cx))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = buffer.getvalue()
        if not new_file and not _ends_with_newline(self.path):
            text = "\n" + text  # after a line cut by a crash: never glue a record onto it
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def _upgrade(self) -> None:
        """Rewrite an older ``image,label,class`` autosave as a journal (atomically)."""
        frame = self.frame()
        frame = frame.assign(ok=1)[list(JOURNAL_COLUMNS)]
        with replacing(self.path, "label autosave") as tmp:
            frame.to_csv(tmp, index=False)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1) == b"\n"


def is_journal_with_ok(path: Path) -> bool:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.readline().strip().split(",") == list(JOURNAL_COLUMNS)


def _num(value) -> str:
    return "" if _blank(value) else f"{float(value):.2f}"
