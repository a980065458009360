"""Class sets: defaults match the generator, shortcuts, editing rules, JSON round trip."""

from __future__ import annotations

import json

import pytest

from napari_reddino.label.classes import (
    CHULA_CLASS_SET,
    CLASS_SETS,
    DEFAULT_CLASS_SET,
    ELSAFTY_CLASS_SET,
    ClassInUseError,
    ClassSet,
    recode,
)


def test_default_set_is_the_generators_classes():
    from napari_reddino.synthetic.smear import DISTRACTOR_CLASSES, RBC_CLASSES

    assert DEFAULT_CLASS_SET.names == (*RBC_CLASSES, *DISTRACTOR_CLASSES)
    assert len(set(DEFAULT_CLASS_SET.colors)) == len(DEFAULT_CLASS_SET)
    assert all(c.startswith("#") and len(c) == 7 for c in DEFAULT_CLASS_SET.colors)
    assert set(CLASS_SETS) == {"synthetic", "chula", "elsafty"}
    assert "spherocyte" in CHULA_CLASS_SET and len(ELSAFTY_CLASS_SET) == 9


def test_first_nine_classes_get_number_keys():
    shortcuts = DEFAULT_CLASS_SET.shortcuts
    assert list(shortcuts) == [str(i) for i in range(1, 10)]
    assert shortcuts["1"] == "discocyte" and shortcuts["9"] == "schistocyte"
    assert DEFAULT_CLASS_SET.shortcut_of("sickle") == "8"
    assert DEFAULT_CLASS_SET.shortcut_of("platelet") is None


def test_add_rename_remove_return_new_sets():
    base = ClassSet(("normal", "sickle"), ("red", "#0000ff"))
    assert base.colors == ("#ff0000", "#0000ff")
    grown = base.add("target")
    assert grown.names == ("normal", "sickle", "target") and base.names == ("normal", "sickle")
    assert grown.color_of("target") not in base.colors
    renamed = grown.rename("normal", "discocyte")
    assert renamed.names[0] == "discocyte" and renamed.colors == grown.colors
    smaller = renamed.remove("sickle", in_use=["discocyte", None, "target"])
    assert smaller.names == ("discocyte", "target")
    assert smaller.color_map == {"discocyte": "#ff0000", "target": grown.color_of("target")}


def test_editing_errors_are_clear():
    base = ClassSet(("normal", "sickle"))
    with pytest.raises(ClassInUseError, match="cannot remove class 'sickle': 2 cell"):
        base.remove("sickle", in_use=["sickle", "normal", "sickle", None])
    with pytest.raises(ValueError, match="already exists"):
        base.add("normal")
    with pytest.raises(ValueError, match="unique; repeated: \\['normal'\\]"):
        base.rename("sickle", "normal")
    with pytest.raises(KeyError, match="unknown class 'ghost'"):
        base.rename("ghost", "x")
    with pytest.raises(ValueError, match="not colors: \\['nope'\\]"):
        ClassSet(("a",), ("nope",))
    with pytest.raises(ValueError, match="non-empty"):
        ClassSet(("a", " "))


def test_recode_renames_the_cells_column():
    assert recode(["a", None, "b", "a"], "a", "z").tolist() == ["z", None, "b", "z"]


def test_json_round_trip_and_bad_files(tmp_path):
    edited = DEFAULT_CLASS_SET.add("parasitized", "#123456")
    path = edited.save(tmp_path / "classes.json")
    assert ClassSet.load(path) == edited
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        ClassSet.load(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps({"classes": ["a"]}))
    with pytest.raises(ValueError, match="not a napari-reddino class set"):
        ClassSet.load(tmp_path / "other.json")
    with pytest.raises(FileNotFoundError, match="class set file not found"):
        ClassSet.load(tmp_path / "missing.json")
