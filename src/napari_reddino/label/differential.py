"""The red-cell differential: each class's share of the counted red cells, with its uncertainty.

A hematologist reads a smear as "12 % target cells (2+)". That number is only as good as the
cells behind it, so every percentage comes with its 95 % Wilson score interval (scipy's
``binomtest(...).proportion_ci(method="wilson")``: unlike the textbook p +- 1.96 SE it stays
inside [0, 100] % and keeps its coverage for rare classes and small counts) and the number of
cells counted. Only counted cells (:mod:`napari_reddino.segment.counted`: intact red cells) enter
by default, as in a manual differential.

Grades follow the ICSH 2015 recommendations (Palmer et al., Int J Lab Hematol 2015,
doi:10.1111/ijlh.12327) from ``icsh_grades.csv`` beside this module: a table a laboratory may
edit (its own copy via ``grades=``). Each row maps the class names of any class set (Chula
RBC-12, the synthetic set, Elsafty) to one ICSH term; a class of no row (normal cells,
discocytes) gets no grade. Where fewer cells were counted than a term needs (schistocytes: at
least 1,000 red cells, Zini et al. 2012) or where the interval spans two grades, ``note`` says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.cell_table import unlabeled_mask
from napari_reddino.segment.counted import counted_mask

#: The grading table shipped with the package (package data).
GRADES_FILE = Path(__file__).with_name("icsh_grades.csv")
#: Written into a run folder by ``napari-reddino differential`` and ``propagate``.
DIFFERENTIAL_FILE = "differential.csv"
#: Classes that are not red cells: never part of a red-cell differential.
NOT_RED_CELLS = frozenset({"wbc", "platelet"})
CONFIDENCE_LEVEL = 0.95
COLUMNS = ("level", nm.SUBJECT, nm.IMAGE, nm.CLASS, "cells", "counted", "percent", "ci_low",
           "ci_high", "icsh_term", "grade", "grade_range", "note")
_GRADE_COLUMNS = ("plus1_from", "plus2_above", "plus3_above", "min_cells")


def load_grades(path: str | Path | None = None) -> pd.DataFrame:
    """The grading table (the shipped one by default); a clear ``ValueError`` when malformed."""
    path = Path(path) if path is not None else GRADES_FILE
    grades = pd.read_csv(path, comment="#", dtype={"icsh_term": str, "classes": str})
    missing = {"icsh_term", "classes", *_GRADE_COLUMNS} - set(grades.columns)
    if missing:
        raise ValueError(f"{path}: the grading table lacks column(s) {sorted(missing)}")
    for column in _GRADE_COLUMNS:
        grades[column] = pd.to_numeric(grades[column], errors="coerce")
    if grades["plus1_from"].isna().any():
        raise ValueError(f"{path}: every row needs plus1_from (the lowest graded percentage)")
    if "source" not in grades.columns:
        grades["source"] = ""
    return grades.reset_index(drop=True)


def term_map(grades: pd.DataFrame) -> dict[str, int]:
    """Lower-case class name -> row of ``grades``; a class in two rows is an error."""
    mapping: dict[str, int] = {}
    for row, names in enumerate(grades["classes"].fillna("").astype(str)):
        for name in filter(None, (n.strip().lower() for n in names.split("|"))):
            if name in mapping:
                raise ValueError(f"class {name!r} is listed under two ICSH terms")
            mapping[name] = row
    return mapping


def wilson_interval(k: int, n: int, confidence: float = CONFIDENCE_LEVEL) -> tuple[float, float]:
    """Wilson score interval of ``k`` in ``n`` as fractions (NaN when nothing was counted)."""
    if n <= 0:
        return float("nan"), float("nan")
    from scipy.stats import binomtest

    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def grade(percent: float, row: pd.Series) -> str:
    """ICSH grade of a percentage by one row of the table: ``""`` below 1+ (or none seen),
    ``"present"`` for terms reported only as present, else ``"1+"``, ``"2+"``, ``"3+"``."""
    if not np.isfinite(percent) or percent <= 0 or percent < row["plus1_from"]:
        return ""
    if not np.isfinite(row["plus2_above"]):
        return "present"
    if np.isfinite(row["plus3_above"]) and percent > row["plus3_above"]:
        return "3+"
    return "2+" if percent > row["plus2_above"] else "1+"


def _red_cells(table: pd.DataFrame, counted_only: bool, class_key: str) -> pd.DataFrame:
    """Rows that count: counted (when asked) and not a white cell / platelet class."""
    keep = counted_mask(table) if counted_only else np.ones(len(table), bool)
    classes = table[class_key] if class_key in table.columns else pd.Series(None, table.index)
    keep &= ~classes.astype(str).str.lower().isin(NOT_RED_CELLS).to_numpy()
    out = pd.DataFrame({
        nm.SUBJECT: table[nm.SUBJECT].astype(str).to_numpy() if nm.SUBJECT in table.columns
        else "unknown",
        nm.IMAGE: table[nm.IMAGE].astype(str).to_numpy() if nm.IMAGE in table.columns else "",
        nm.CLASS: classes.astype(object).to_numpy(),
    })[keep]
    out["classified"] = ~unlabeled_mask(out[nm.CLASS].to_numpy())
    out[nm.CLASS] = out[nm.CLASS].where(out["classified"], "").astype(str)
    return out


def _group_rows(cells: pd.DataFrame, classes: list[str], grades: pd.DataFrame, terms: dict,
                confidence: float) -> list[dict]:
    """One row per class of one subject or smear."""
    classified = cells[cells["classified"]]
    n = len(classified)
    counts = classified[nm.CLASS].value_counts()
    term_counts: dict[int, int] = {}
    for name, count in counts.items():
        row = terms.get(name.lower())
        if row is not None:
            term_counts[row] = term_counts.get(row, 0) + int(count)
    unclassified = len(cells) - n
    rows = []
    for name in classes:
        k = int(counts.get(name, 0))
        low, high = wilson_interval(k, n, confidence)
        out = {nm.CLASS: name, "cells": k, "counted": n,
               "percent": 100.0 * k / n if n else np.nan, "ci_low": 100.0 * low,
               "ci_high": 100.0 * high, "icsh_term": "", "grade": "", "grade_range": "",
               "note": ""}
        notes = [f"{unclassified} counted cell(s) have no class yet"] if unclassified else []
        term = terms.get(name.lower())
        if term is not None and n:
            spec = grades.iloc[term]
            k_term = term_counts.get(term, 0)
            t_low, t_high = wilson_interval(k_term, n, confidence)
            out["icsh_term"] = str(spec["icsh_term"])
            out["grade"] = grade(100.0 * k_term / n, spec)
            span = (grade(100.0 * t_low, spec) or "none", grade(100.0 * t_high, spec) or "none")
            out["grade_range"] = span[0] if span[0] == span[1] else f"{span[0]} to {span[1]}"
            if span[0] != span[1]:
                notes.append(f"the {confidence:.0%} interval spans {out['grade_range']}")
            minimum = spec["min_cells"]
            if np.isfinite(minimum) and n < minimum:
                notes.append(f"{n} red cells counted, fewer than the {int(minimum)} ICSH asks "
                             f"for {spec['icsh_term']}: grade not reliable")
        out["note"] = "; ".join(notes)
        rows.append(out)
    return rows


def differential(table: pd.DataFrame, *, counted_only: bool = DEFAULTS.counted_only,
                 grades: pd.DataFrame | str | Path | None = None, class_key: str = nm.CLASS,
                 confidence: float = CONFIDENCE_LEVEL) -> pd.DataFrame:
    """Counts, percentages, Wilson intervals and ICSH grades per subject and per smear.

    One row per (level, subject, image, class): ``level`` is ``"subject"`` (all smears of a
    subject, ``image`` empty) or ``"smear"``. ``cells``: cells of the class; ``counted``: the
    classified red cells of that subject / smear (the denominator); ``percent``, ``ci_low``,
    ``ci_high`` in percent. ``counted_only=False`` counts every object with a class.
    """
    grades = grades if isinstance(grades, pd.DataFrame) else load_grades(grades)
    terms = term_map(grades)
    cells = _red_cells(table, counted_only, class_key)
    totals = cells.loc[cells["classified"], nm.CLASS].value_counts()
    classes = sorted(totals.index, key=lambda c: (-totals[c], c))
    rows = []
    for level, keys in (("subject", [nm.SUBJECT]), ("smear", [nm.SUBJECT, nm.IMAGE])):
        for key, group in cells.groupby(keys, sort=True):
            key = key if isinstance(key, tuple) else (key,)
            where = {nm.SUBJECT: key[0], nm.IMAGE: key[1] if len(key) > 1 else ""}
            rows += [{"level": level, **where, **row}
                     for row in _group_rows(group, classes, grades, terms, confidence)]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def class_sources(table: pd.DataFrame, *, counted_only: bool = DEFAULTS.counted_only) -> str:
    """Where the classes of the differential's cells come from: "12 manual, 80 predicted"
    (a reference model's classes never replace manual labels; propagated ones are named too)."""
    cells = _red_cells(table, counted_only, nm.CLASS)
    rows = cells.index[cells["classified"]].to_numpy()
    source = (table[nm.CLASS_SOURCE].astype(object).to_numpy()[rows]
              if nm.CLASS_SOURCE in table.columns else np.full(len(rows), nm.MANUAL))
    counts = pd.Series(source).fillna("unknown source").astype(str).value_counts().to_dict()
    words = [f"{counts.pop(s, 0)} {s}" for s in (nm.MANUAL, nm.PREDICTED)]
    return ", ".join(words + [f"{n} {s}" for s, n in counts.items()])


def write_differential(table: pd.DataFrame, folder: str | Path, **kwargs) -> Path:
    """``differential.csv`` in ``folder`` (written atomically, formulas escaped)."""
    from napari_reddino.io.atomic import write_csv

    return write_csv(differential(table, **kwargs), Path(folder) / DIFFERENTIAL_FILE,
                     what="differential")


def summary_line(diff: pd.DataFrame) -> str:
    """One line per subject for the terminal: counted cells and the graded terms."""
    lines = []
    for subject, rows in diff[diff["level"] == "subject"].groupby(nm.SUBJECT, sort=True):
        graded = rows[rows["grade"] != ""].drop_duplicates("icsh_term")
        terms = ", ".join(f"{r.icsh_term} {r.grade}" for r in graded.itertuples()) or "no grade"
        counted = int(rows["counted"].iloc[0]) if len(rows) else 0
        lines.append(f"{subject}: {counted} red cells counted; {terms}")
    return "\n".join(lines)
