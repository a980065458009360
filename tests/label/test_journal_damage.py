"""A damaged label autosave costs only its damaged lines: a line cut by a crash never swallows
the next record, and a garbage tail leaves every readable row to restore."""

from __future__ import annotations

import pytest

from napari_reddino.label.files import Autosaver
from napari_reddino.label.journal import is_journal, read_journal


def _saved(path) -> Autosaver:
    saver = Autosaver(path)
    saver.record("a.png", 1, "discocyte", centroid=(10.0, 12.0))
    saver.record("a.png", 2, "echinocyte", centroid=(20.0, 22.0))
    return saver


def _classes(frame) -> dict:
    return dict(zip(frame["label"].tolist(), frame["class"].tolist()))


def test_a_record_after_a_line_cut_mid_way_starts_on_its_own_line(tmp_path):
    path = tmp_path / "autosave.csv"
    _saved(path)
    with open(path, "ab") as handle:  # a crash while writing cell 3: no 'ok', no newline
        handle.write(b"a.png,3,target,30.0")
    with pytest.warns(UserWarning, match="1 unreadable line"):
        saver = Autosaver(path)
    saver.record("a.png", 4, "sickle", centroid=(40.0, 42.0))
    with pytest.warns(UserWarning, match="1 unreadable line"):
        restored = read_journal(path)
    assert _classes(restored) == {1: "discocyte", 2: "echinocyte", 4: "sickle"}
    assert restored.attrs["skipped_lines"] == 1


def test_a_garbage_tail_skips_its_lines_and_restores_every_valid_row(tmp_path):
    path = tmp_path / "autosave.csv"
    _saved(path)
    with open(path, "ab") as handle:
        handle.write(b"\xff\xfe\x00garbage\x00\n\xff\xd8\xff\xe0 more\n")
    assert is_journal(path)
    with pytest.warns(UserWarning, match=r"2 unreadable line\(s\) skipped"):
        restored = Autosaver(path).restore()
    assert _classes(restored) == {1: "discocyte", 2: "echinocyte"}
    with pytest.warns(UserWarning):
        saver = Autosaver(path)
    saver.record("a.png", 5, "target", centroid=(50.0, 52.0))  # appending still works
    with pytest.warns(UserWarning):
        assert _classes(read_journal(path))[5] == "target"


def test_an_intact_journal_reads_without_a_warning(tmp_path, recwarn):
    path = tmp_path / "autosave.csv"
    _saved(path)
    restored = Autosaver(path).restore()
    assert _classes(restored) == {1: "discocyte", 2: "echinocyte"}
    assert restored.attrs["skipped_lines"] == 0
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
