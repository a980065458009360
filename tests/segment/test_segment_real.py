"""Real smears that once broke the classical backend (skipped where the shared data is absent)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from skimage import io

from napari_reddino.segment.dispatch import segment

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"


def _image(relative: str) -> np.ndarray:
    path = DATA / relative
    if not path.is_file():
        pytest.skip(f"real smear {path} not present")
    return io.imread(path)[..., :3]


def test_thalassemia_smear_with_a_lymphocyte_keeps_its_red_cells():
    """Its nucleus once pulled the threshold so high that the smear gave one object."""
    result = segment(_image("chula_rbc_diseases/thalassemia/Thalassemia_1.JPG"))
    kinds = result.features["kind"]
    red = result.features[kinds == "rbc"]
    assert 60 <= len(red) <= 160, len(red)  # ~100 red cells in this 1280x960 frame
    assert (kinds == "wbc").sum() == 1  # the lymphocyte
    diameter = 2 * np.sqrt(red["area"].median() / np.pi)
    assert 55 < diameter < 90, diameter
    assert result.warning is None


def test_bccd_white_cells_are_kind_wbc():
    hits, boxed = 0, 0
    for stem in ("BloodImage_00000", "BloodImage_00097", "BloodImage_00219", "BloodImage_00352"):
        image = _image(f"bccd/JPEGImages/{stem}.jpg")
        result = segment(image)
        kind = np.array(["", *result.features["kind"]], dtype=object)
        for obj in ET.parse(DATA / "bccd" / "Annotations" / f"{stem}.xml").getroot().iter("object"):
            if obj.findtext("name") != "WBC":
                continue
            box = obj.find("bndbox")
            x0, y0, x1, y1 = (int(float(box.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            qy, qx = (y1 - y0) // 4, (x1 - x0) // 4  # the central half of the box
            core = result.labels[y0 + qy: y1 - qy, x0 + qx: x1 - qx].ravel()
            largest = np.bincount(core[core > 0]).argmax()  # the white cell fills most of it
            boxed += 1
            hits += kind[largest] == "wbc"
    assert boxed >= 4 and hits == boxed


@pytest.mark.parametrize("image, x, y", [("661.jpg", 480, 387), ("696.jpg", 323, 430),
                                         ("701.jpg", 593, 259)])
def test_thin_schistocyte_fragments_become_counted_cells(image, x, y):
    """Labelled schistocytes of chula_rbc12_dev too thin for a distance peak were dropped."""
    from napari_reddino.segment.counted import add_counted

    result = segment(_image(f"chula_rbc12_dev/images/{image}"))
    label = int(result.labels[y, x])
    assert label > 0, "the labelled fragment has no object"
    row = add_counted(result.features).set_index("label").loc[label]
    assert row["kind"] == "rbc" and bool(row["counted"]), row
