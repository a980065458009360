"""io.atomic and the writers built on it: a failed write keeps the previous file, removes its
temporary file and names the file and the cause."""

from __future__ import annotations

import errno

import numpy as np
import pandas as pd
import pytest

from napari_reddino.io import atomic
from napari_reddino.io.atomic import WriteError, replacing, replacing_all
from napari_reddino.io.cell_table import CellEmbeddings, load_table, save_table


def _table(n: int = 3) -> pd.DataFrame:
    return pd.DataFrame({"label": np.arange(1, n + 1), "image": "a.png", "subject": "s",
                         "centroid_y": 1.0, "centroid_x": 2.0, "area": 3.0})


def test_a_library_error_keeping_errno_in_its_text_is_named_as_the_size_limit(tmp_path):
    path = tmp_path / "cells.parquet"
    path.write_bytes(b"old")
    with pytest.raises(WriteError) as caught, replacing(path, "cell table") as tmp:
        tmp.write_bytes(b"half")
        raise OSError("[Errno 27] Error writing bytes to file. Detail: [errno 27] File too large")
    assert str(caught.value).startswith(f"could not write cell table {path}: file size limit "
                                        "exceeded; the previous file")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_nested_write_names_the_target_not_the_temporary_file(tmp_path):
    path = tmp_path / "t.npz"
    with pytest.raises(WriteError) as caught, replacing(path, "arrays") as tmp, \
            replacing(tmp, "inner"):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert str(caught.value).startswith(f"could not write arrays {path}: no space left on device")
    assert not list(tmp_path.iterdir())


def test_files_written_together_are_all_kept_when_one_fails(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(WriteError, match=r"b\.txt"), \
            replacing_all({a: "first", b: "second"}) as tmp:
        tmp[a].write_text("new a")
        tmp[b].write_text("new")
        raise OSError(errno.EFBIG, "File too large")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]
    with replacing_all({a: "first", b: "second"}) as tmp:
        tmp[a].write_text("new a")
        tmp[b].write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")


def test_a_parquet_table_that_fails_midway_leaves_the_previous_table(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    path = tmp_path / "cells.parquet"
    save_table(_table(3), path)
    real = pq.write_table

    def half_then_full_disk(table, where, *args, **kwargs):
        real(table, where, *args, **kwargs)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pq, "write_table", half_then_full_disk)
    with pytest.raises(WriteError, match=f"cell table {path}: no space left on device"):
        save_table(_table(5), path)
    monkeypatch.undo()
    assert len(load_table(path)) == 3 and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_embeddings_keep_their_stamp_and_a_damaged_file_is_named(tmp_path):
    path = tmp_path / "embeddings.npz"
    CellEmbeddings(np.ones((2, 3)), ["a", "a"], [1, 2], "m", "cls_crop").save(path, stamp="s1")
    with np.load(path) as data:
        assert str(data["stamp"]) == "s1"
    assert len(CellEmbeddings.load(path)) == 2
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"{path} is damaged \(truncated"):
        CellEmbeddings.load(path)


def test_a_truncated_table_names_its_file_and_what_to_do(tmp_path):
    path = tmp_path / "cells.parquet"
    save_table(_table(), path)
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(ValueError, match=rf"{path} is damaged .*napari-reddino project"):
        load_table(path)


def test_the_class_set_and_text_writers_go_through_a_temporary_file(tmp_path, monkeypatch):
    from napari_reddino.label.classes import CLASS_SETS

    path = tmp_path / "classes.json"
    class_set = next(iter(CLASS_SETS.values()))
    class_set.save(path)
    before = path.read_text()
    monkeypatch.setattr(atomic.os, "replace", _refuse)
    with pytest.raises(WriteError, match=rf"class set {path}"):
        class_set.save(path)
    assert path.read_text() == before and [p.name for p in tmp_path.iterdir()] == [path.name]


def _refuse(*_args):
    raise OSError(errno.EROFS, "Read-only file system")
