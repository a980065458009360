"""Object kinds (issue 24): a drawn arrow swallows nothing, a white cell keeps to itself,
platelets are platelets, and giant objects are warned about."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_reddino.segment.check import oversize_warning
from napari_reddino.segment.dispatch import segment
from napari_reddino.segment.marks import drawn_marks
from napari_reddino.segment.metrics import match_instances
from napari_reddino.synthetic.smear import RBC_CLASSES, synthetic_smear

YELLOW = np.array([250, 250, 10], np.uint8)


def paint_arrow(image: np.ndarray, tip: tuple[int, int], length: int, width: int) -> np.ndarray:
    """A pure-yellow arrow (a shaft and a head, pointing up-left) as annotation software draws."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    u = ((yy - tip[0]) + (xx - tip[1])) / np.sqrt(2)  # along the arrow, from its tip
    v = ((yy - tip[0]) - (xx - tip[1])) / np.sqrt(2)  # across it
    head = (u >= 0) & (u < 2 * width) & (np.abs(v) < u * 0.8)
    shaft = (u >= 2 * width) & (u < length) & (np.abs(v) < width / 2)
    out = image.copy()
    out[head | shaft] = YELLOW
    return out


@pytest.fixture(scope="module")
def smear():
    """A smear with white cells and platelets; its first white cell is the one studied."""
    return synthetic_smear((512, 512), seed=8,
                           class_weights={"discocyte": 1.0})


def _kinds(result) -> np.ndarray:
    return np.array(["", *result.features.sort_values("label")["kind"]], dtype=object)


def _inner_truth(smear, kind: str | None = None) -> np.ndarray:
    """Truth cells of ``kind`` (red cells when None) away from the border; red cells that the
    generator drew under a white cell (their truth touches it) are left out."""
    cells = smear.cells
    margin, (height, width) = 30, smear.labels.shape
    inner = ((cells["centroid_y"] > margin) & (cells["centroid_y"] < height - margin)
             & (cells["centroid_x"] > margin) & (cells["centroid_x"] < width - margin))
    chosen = cells["class"].isin(RBC_CLASSES) if kind is None else cells["class"] == kind
    if kind is None:
        white = np.isin(smear.labels, cells["label"][cells["class"] == "wbc"])
        under = np.unique(smear.labels[ndimage.binary_dilation(white, iterations=2)])
        chosen &= ~cells["label"].isin(under)
    return cells[inner & chosen]


def test_a_drawn_arrow_is_other_and_swallows_no_cell(smear):
    red = _inner_truth(smear)
    target = red.iloc[len(red) // 2]  # the arrow points at a red cell, its tip on the cell
    tip = (int(target["centroid_y"]) + 14, int(target["centroid_x"]) + 14)
    image = paint_arrow(smear.image, tip, length=70, width=10)
    drawn = np.all(image == YELLOW, axis=-1)
    assert drawn_marks(image)[drawn].mean() > 0.99
    assert not drawn_marks(smear.image).any()  # no stain color is taken for a mark
    result = segment(image)
    kinds = _kinds(result)
    on_arrow = np.bincount(result.labels[drawn], minlength=len(kinds))
    mark = int(on_arrow[1:].argmax()) + 1
    assert kinds[mark] == "other"
    assert (result.labels == mark).sum() < 2 * drawn.sum()  # the arrow and its halo, no cell
    # every red cell stays a red cell of its own, the one under the arrow's tip included
    touched = np.unique(smear.labels[ndimage.binary_dilation(drawn, iterations=4)])
    truth, found, _ = match_instances(smear.labels, result.labels)
    matched = dict(zip(truth.tolist(), found.tolist(), strict=True))
    for label in red["label"]:
        obj = result.labels[int(red.loc[red["label"] == label, "centroid_y"].iloc[0]),
                            int(red.loc[red["label"] == label, "centroid_x"].iloc[0])]
        assert kinds[obj] not in ("wbc", "other"), (label, kinds[obj])
    assert all(t in matched and kinds[matched[t]] == "rbc"
               for t in touched if t and t in set(red["label"]))
    assert result.warning is None


def test_a_white_cell_keeps_its_red_neighbors(smear):
    white = _inner_truth(smear, "wbc")
    assert len(white), "the fixture smear needs a white cell inside the image"
    result = segment(smear.image)
    kinds = _kinds(result)
    red = _inner_truth(smear)
    truth, found, _ = match_instances(smear.labels, result.labels)
    matched = dict(zip(truth.tolist(), found.tolist(), strict=True))
    for label in white["label"]:
        assert label in matched and kinds[matched[label]] == "wbc"  # IoU >= 0.5 with its truth
        obj = matched[label]
        inside = result.labels[red["centroid_y"].astype(int), red["centroid_x"].astype(int)]
        assert not (inside == obj).any()  # no red cell's center lies in the white cell
    assert not np.isin(kinds[result.labels[red["centroid_y"].astype(int),
                                           red["centroid_x"].astype(int)]], ("wbc",)).any()


def test_platelets_are_typed_platelet(smear):
    platelets = _inner_truth(smear, "platelet")
    assert len(platelets) >= 2, "the fixture smear needs platelets"
    result = segment(smear.image)
    kinds = _kinds(result)
    hit = result.labels[platelets["centroid_y"].round().astype(int),
                        platelets["centroid_x"].round().astype(int)]
    assert (kinds[hit] == "platelet").mean() >= 0.75, kinds[hit]


def test_objects_far_larger_than_a_red_cell_are_warned_about():
    areas = np.array([100.0] * 20 + [900.0, 300.0, 2000.0])
    kinds = np.array(["rbc"] * 20 + ["wbc", "wbc", "other"], dtype=object)
    whole = np.ones(len(areas), bool)
    warning = oversize_warning(areas, kinds, whole)
    assert warning is not None and warning.startswith("1 object(s)")  # a mark is not warned of
    assert oversize_warning(areas[:-3], kinds[:-3], whole[:-3]) is None
