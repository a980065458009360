"""The differential against a count made by hand, and the ICSH grading table."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_reddino.label.classes import CHULA_CLASS_SET, DEFAULT_CLASS_SET
from napari_reddino.label.differential import (
    GRADES_FILE,
    differential,
    grade,
    load_grades,
    term_map,
    wilson_interval,
    write_differential,
)


def _cells(image, classes, subject="A", **flags):
    table = pd.DataFrame({"image": image, "subject": subject, "label": range(1, len(classes) + 1),
                          "class": classes, "kind": "rbc", "touches_border": False})
    for column, value in flags.items():
        table[column] = value
    return table


def hand_table() -> pd.DataFrame:
    """Smear a1: 3 target of 10 counted (+ a border target, a white cell); a2: 1 target, 1
    schistocyte, 8 normal of 10 counted."""
    table = pd.concat([
        _cells("a1", ["target cell"] * 3 + ["normal"] * 7),
        _cells("a1", ["target cell"], touches_border=True),
        _cells("a1", [None], kind="wbc"),
        _cells("a2", ["target cell", "schistocyte"] + ["normal"] * 8),
    ], ignore_index=True)
    table["label"] = table.groupby("image").cumcount() + 1  # (image, label) keys are unique
    return table


def _row(diff, level, cls, image=""):
    rows = diff[(diff["level"] == level) & (diff["class"] == cls) & (diff["image"] == image)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_counts_percentages_and_wilson_intervals_match_a_hand_count():
    diff = differential(hand_table())
    smear = _row(diff, "smear", "target cell", "a1")
    assert (smear["cells"], smear["counted"]) == (3, 10)  # border cell and white cell left out
    assert smear["percent"] == pytest.approx(30.0)
    # Wilson 3/10 by hand: (0.3 + z²/20 -+ z sqrt(0.021 + z²/400)) / (1 + z²/10), z = 1.95996
    assert (smear["ci_low"], smear["ci_high"]) == pytest.approx((10.779, 60.322), abs=1e-3)
    subject = _row(diff, "subject", "target cell")
    assert (subject["cells"], subject["counted"], subject["percent"]) == (4, 20, 20.0)
    # Wilson 4/20 by hand: center 0.24834, half width 0.16768
    assert (subject["ci_low"], subject["ci_high"]) == pytest.approx((8.066, 41.602), abs=1e-3)
    normal = _row(diff, "subject", "normal")
    assert (normal["cells"], normal["icsh_term"], normal["grade"]) == (15, "", "")
    shares = diff[(diff["level"] == "smear") & (diff["image"] == "a2")]["percent"]
    assert shares.sum() == pytest.approx(100.0)


def test_grades_and_notes_of_the_hand_count():
    diff = differential(hand_table())
    target = _row(diff, "subject", "target cell")
    assert (target["icsh_term"], target["grade"]) == ("target cells", "1+")  # 20 % is 1+
    assert target["grade_range"] == "1+ to 2+"  # 8.1-41.6 %: 1+ from 5, 2+ above 20
    assert "spans" in target["note"]
    schisto = _row(diff, "subject", "schistocyte")
    assert (schisto["percent"], schisto["grade"]) == (5.0, "3+")
    assert "fewer than the 1000" in schisto["note"]
    assert _row(diff, "smear", "target cell", "a1")["grade"] == "2+"  # 30 %


def test_all_objects_switch_counts_excluded_objects():
    diff = differential(hand_table(), counted_only=False)
    smear = _row(diff, "smear", "target cell", "a1")
    assert (smear["cells"], smear["counted"]) == (4, 11)
    assert "1 counted cell(s) have no class yet" in smear["note"]  # the unclassified white cell


@pytest.mark.parametrize(("percent", "expected"), [
    (0.0, ""), (4.9, ""), (5.0, "1+"), (20.0, "1+"), (20.1, "2+"), (50.0, "2+"), (50.1, "3+")])
def test_grade_thresholds_of_target_cells(percent, expected):
    grades = load_grades()
    assert grade(percent, grades.iloc[term_map(grades)["target cell"]]) == expected


@pytest.mark.parametrize(("name", "percent", "expected"), [
    ("schistocyte", 0.0, ""), ("schistocyte", 0.5, "1+"), ("schistocyte", 1.0, "2+"),
    ("schistocyte", 1.5, "2+"), ("schistocyte", 2.0, "2+"),
    ("schistocyte", 2.5, "3+"), ("macrocyte", 10.0, ""), ("macrocyte", 11.0, "1+"),
    ("sickle", 0.1, "present")])
def test_grade_thresholds_of_other_terms(name, percent, expected):
    grades = load_grades()
    assert grade(percent, grades.iloc[term_map(grades)[name]]) == expected


def test_shipped_table_maps_every_abnormal_class_and_cites_its_source():
    grades = load_grades()
    terms = term_map(grades)
    normal = {"normal", "discocyte", "wbc", "platelet"}
    for name in [*CHULA_CLASS_SET.names, *DEFAULT_CLASS_SET.names]:
        assert (name.lower() in terms) != (name in normal), name
    assert grades["source"].str.contains("10.1111/ijlh.12327").all()
    schisto = grades.iloc[terms["schistocyte"]]
    assert schisto["min_cells"] == 1000


def test_edited_grading_table_is_used(tmp_path):
    edited = load_grades()
    edited.loc[edited["icsh_term"] == "target cells", "plus2_above"] = 10
    path = tmp_path / "grades.csv"
    edited.to_csv(path, index=False)
    diff = differential(hand_table(), grades=path)
    assert _row(diff, "subject", "target cell")["grade"] == "2+"


def test_wilson_interval_of_nothing_counted_is_nan():
    assert np.isnan(wilson_interval(0, 0)).all()
    assert wilson_interval(0, 10)[0] == 0.0


def test_write_differential_and_package_data(tmp_path):
    path = write_differential(hand_table(), tmp_path)
    assert path.name == "differential.csv"
    assert len(pd.read_csv(path)) == len(differential(hand_table()))
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    section = text.split("[tool.setuptools.package-data]")[1]
    line = re.search(r"^napari_reddino = \[(.*)\]$", section, re.MULTILINE).group(1)
    patterns = [p.strip().strip('"') for p in line.split(",")]
    relative = GRADES_FILE.relative_to(GRADES_FILE.parents[1]).as_posix()
    assert any(Path(relative).match(p) for p in patterns), patterns


def test_report_section_shows_the_subject_differential(tmp_path):
    from napari_reddino.runs.report import differential_section

    html = differential_section(hand_table(), tmp_path)
    assert "20 of 22 objects counted" in html and "doi:10.1111/ijlh.12327" in html
    shown = pd.read_html(io.StringIO(html))[0]
    assert set(shown["class"]) == {"normal", "target cell", "schistocyte"}  # subject rows only
    assert (tmp_path / "differential.csv").is_file()
    unlabeled = differential_section(hand_table().drop(columns="class"), tmp_path / "none")
    assert "no classes yet" in unlabeled and "<table" not in unlabeled
