"""The run-folder writer and a layer's image name (#23 B8): ``../../../X.png`` or an absolute
path wrote the photo outside the run folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from napari_reddino.plugin.writer import write_run_folder


def _layers(image_name: str) -> list[tuple]:
    labels = np.zeros((32, 32), np.int32)
    labels[4:10, 4:10], labels[20:28, 18:26] = 1, 2
    features = pd.DataFrame({"label": [1, 2], "centroid_y": [6.5, 23.5],
                             "centroid_x": [6.5, 21.5], "area": [36, 64]})
    image = np.full((32, 32, 3), 200, np.uint8)
    metadata = {"image": image_name, "subject": "s1", "image_layer": "photo"}
    return [(image, {"name": "photo"}, "image"),
            (labels, {"name": "photo labels", "features": features, "metadata": metadata},
             "labels")]


@pytest.mark.parametrize("name", ["../../../escaped.png", "/{tmp}/abs/escaped.png",
                                  "..\\..\\escaped.png", "sub/dir/escaped.jpg", ".."])
def test_image_names_never_leave_the_run_folder(tmp_path, name):
    name = name.format(tmp=str(tmp_path).strip("/"))
    run = tmp_path / "deep" / "er" / "run"
    (tmp_path / "abs").mkdir()
    write_run_folder(str(run), _layers(name))
    outside = [p for p in tmp_path.rglob("*") if p.is_file() and run not in p.parents]
    assert outside == []
    [photo] = (run / "images").iterdir()
    assert photo.suffix == ".png" and "/" not in photo.name and len(photo.name) < 140
    [smear] = (run / "smears").iterdir()
    assert smear.parent == run / "smears"


def test_plain_names_keep_their_name(tmp_path):
    write_run_folder(str(tmp_path / "run"), _layers("smear_01.png"))
    assert [p.name for p in (tmp_path / "run" / "images").iterdir()] == ["smear_01.png"]
    assert (tmp_path / "run" / "smears" / "smear_01.png").is_dir()


def test_two_layers_whose_names_differ_only_by_folder_stay_apart(tmp_path):
    layers = _layers("a/x.png") + _layers("b/x.png")
    layers[2] = (layers[2][0], {"name": "photo2"}, "image")
    layers[3][1]["metadata"] = {**layers[3][1]["metadata"], "image_layer": "photo2"}
    write_run_folder(str(tmp_path / "run"), layers)
    assert len(list((tmp_path / "run" / "images").iterdir())) == 2
    assert len(list(Path(tmp_path / "run" / "smears").iterdir())) == 2
