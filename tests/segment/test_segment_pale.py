"""Pale (hypochromic) smears, white cells among them, object kinds and the plausibility check.

The pale smears are what broke the classical backend before issue 11 (a thalassemic smear with
a white cell collapsed to that one object; faint rims were lost): these tests fail on it.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.segment.check import plausibility_warning
from napari_reddino.segment.dispatch import classical_segment, segment
from napari_reddino.segment.metrics import instance_score, match_instances
from napari_reddino.synthetic.smear import RBC_CLASSES, SubjectStyle, synthetic_smear

PALE = SubjectStyle(name="pale", hypochromia=0.9, stain_saturation=0.22, density=0.3)
WEIGHTS = {"discocyte": 1.0, "target": 1.0, "schistocyte": 0.2}


def _scored_out(smear) -> set[int]:
    labels = smear.labels
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    cells = smear.cells
    return set(cells["label"][~cells["class"].isin(RBC_CLASSES) | cells["label"].isin(edge)])


@pytest.fixture(scope="module")
def pale_with_white_cells():
    smear = synthetic_smear((640, 640), seed=2, style=PALE, class_weights=WEIGHTS)
    assert (smear.cells["class"] == "wbc").sum() == 2  # the nuclei that pulled the old threshold
    return smear


def test_pale_target_smear_keeps_whole_cells():
    smear = synthetic_smear((640, 640), seed=0, style=PALE, class_weights=WEIGHTS)
    score = instance_score(smear.labels, classical_segment(smear.image),
                           ignore_truth=_scored_out(smear))
    assert score.f1 >= 0.93, score  # the pre-issue-11 backend: 0.90


def test_white_cells_do_not_collapse_a_pale_smear(pale_with_white_cells):
    smear = pale_with_white_cells
    result = segment(smear.image)
    score = instance_score(smear.labels, result.labels, ignore_truth=_scored_out(smear))
    assert score.f1 >= 0.85, score  # the pre-issue-11 backend found only the white cells: F1 0
    assert result.warning is None
    wbc = smear.cells["label"][smear.cells["class"] == "wbc"].to_numpy()
    truth, pred, _ = match_instances(smear.labels, result.labels)
    kinds = dict(zip(result.features["label"], result.features["kind"], strict=True))
    found = [kinds[p] for t, p in zip(truth, pred, strict=True) if t in wbc]
    assert found == ["wbc"] * len(wbc)
    red = [kinds[p] for t, p in zip(truth, pred, strict=True) if t not in wbc]
    assert red.count("rbc") >= 0.95 * len(red)


def test_table_flags_border_cells_and_kinds(pale_with_white_cells):
    result = segment(pale_with_white_cells.image)
    features, labels = result.features, result.labels
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    assert features["touches_border"].dtype == bool
    assert set(features["label"][features["touches_border"]]) == set(edge[edge > 0])
    assert set(features["kind"]) <= {"rbc", "wbc", "platelet", "other"}
    dropped = segment(pale_with_white_cells.image, exclude_border=True).features
    assert not dropped["touches_border"].any() and len(dropped) < len(features)


def test_plausibility_check_flags_a_collapsed_result(pale_with_white_cells):
    smear = pale_with_white_cells
    result = segment(smear.image)
    kinds = np.array(["", *result.features["kind"]], dtype=object)
    assert plausibility_warning(result.labels, smear.image, kinds) is None
    wbc_only = np.where(np.isin(smear.labels, smear.cells["label"][smear.cells["class"] == "wbc"]),
                        smear.labels, 0)  # what the old backend returned on such a smear
    ids = np.unique(wbc_only)[1:]
    collapsed = np.searchsorted(np.concatenate([[0], ids]), wbc_only).astype(np.int32)
    warning = plausibility_warning(collapsed, smear.image,
                                   np.array(["", *["wbc"] * len(ids)], dtype=object))
    assert warning is not None and "stained area" in warning
