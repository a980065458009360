"""A corrected segmentation: the changed cells' rows follow their new outlines (#29).

Truth: the rows a full re-measure of the corrected labels gives; the corrections must reach
them by measuring the changed cells only, and leave every other row as it was.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from skimage.draw import disk

from napari_reddino import names as nm
from napari_reddino.runs.corrections import (
    apply_correction,
    changed_ids,
    measure_cells,
    merge_cells,
    split_cell,
    split_cell_by_line,
)
from napari_reddino.synthetic.smear import synthetic_smear


@pytest.fixture(scope="module")
def smear():
    smear = synthetic_smear((320, 320), seed=5)
    labels = smear.labels.astype(np.int32)
    ids = np.unique(labels)[1:]
    table = measure_cells(labels, smear.image, ids, image_name="s.png", subject="s1")
    return smear.image, labels, table


def _inner(labels: np.ndarray, table: pd.DataFrame, n: int = 2) -> list[int]:
    """Cells well inside the image and of a typical size."""
    whole = table[~table[nm.TOUCHES_BORDER] & (table[nm.AREA] > table[nm.AREA].median() * 0.8)]
    return whole[nm.LABEL].astype(int).tolist()[:n]


def _full(labels, image, label):
    return measure_cells(labels, image, [label], image_name="s.png", subject="s1").iloc[0]


def test_erasing_half_a_cell_measures_that_cell_again_and_nothing_else(smear):
    image, labels, table = smear
    cell = _inner(labels, table, 1)[0]
    table = table.assign(**{nm.CLASS: np.where(table[nm.LABEL] == cell, "target", None),
                            nm.CLASS_SOURCE: np.where(table[nm.LABEL] == cell, nm.MANUAL, None)})
    after = labels.copy()
    ys, _ = np.nonzero(labels == cell)
    after[(labels == cell) & (np.arange(labels.shape[0])[:, None] > np.median(ys))] = 0
    assert changed_ids(labels, after).tolist() == [cell]
    result = apply_correction(table, labels, after, image, image_name="s.png", subject="s1")
    assert result.reshaped == [cell] and not result.added and not result.removed
    row = result.table.set_index(nm.LABEL).loc[cell]
    assert row[nm.AREA] == np.count_nonzero(after == cell) < 0.6 * np.count_nonzero(labels == cell)
    truth = _full(after, image, cell)
    for column in (nm.AREA, nm.PERIMETER, "morph_area", "morph_elongation", "morph_ring_5"):
        assert row[column] == pytest.approx(truth[column], rel=1e-9), column
    assert row[nm.EDITED] and row[nm.CLASS] == "target"
    assert row[nm.NEEDS_REVIEW]  # half the cell gone: its class is to be checked
    others = result.table[result.table[nm.LABEL] != cell].set_index(nm.LABEL)
    before = table.set_index(nm.LABEL).loc[others.index]
    pd.testing.assert_series_equal(others["morph_area"], before["morph_area"])
    assert not others[nm.EDITED].any()


def test_a_small_touch_keeps_the_class_unflagged(smear):
    image, labels, table = smear
    cell = _inner(labels, table, 1)[0]
    table = table.assign(**{nm.CLASS: np.where(table[nm.LABEL] == cell, "target", None)})
    after = labels.copy()
    ys, xs = np.nonzero(labels == cell)
    after[ys[0], xs[0]] = 0  # one pixel
    row = apply_correction(table, labels, after, image, image_name="s.png").table.set_index(
        nm.LABEL).loc[cell]
    assert row[nm.CLASS] == "target" and not row[nm.NEEDS_REVIEW] and row[nm.EDITED]


def test_painting_a_new_cell_adds_its_row_and_erasing_one_removes_it(smear):
    image, labels, table = smear
    gone = _inner(labels, table, 1)[0]
    after = labels.copy()
    after[after == gone] = 0
    new_id = int(labels.max()) + 1
    free = np.argwhere(labels == 0)
    rr, cc = disk(tuple(free[len(free) // 2]), 6, shape=labels.shape)
    keep = labels[rr, cc] == 0
    after[rr[keep], cc[keep]] = new_id
    result = apply_correction(table, labels, after, image, image_name="s.png", subject="s1")
    assert result.added == [new_id] and result.removed == [gone]
    assert gone not in set(result.table[nm.LABEL])
    row = result.table.set_index(nm.LABEL).loc[new_id]
    assert row[nm.AREA] == keep.sum() and row[nm.SUBJECT] is not None
    assert len(result.table) == len(table)
    assert result.table[nm.LABEL].is_monotonic_increasing
    # the counted flag is recomputed for the new object (a small disc: not a whole red cell)
    assert nm.COUNTED in result.table.columns


def test_merge_and_split_round_trip_through_the_same_update(smear):
    image, labels, table = smear
    a, b = _inner(labels, table, 2)
    merged = merge_cells(labels, [a, b])
    result = apply_correction(table, labels, merged, image, image_name="s.png", subject="s1")
    low, high = sorted((a, b))
    assert result.removed == [high] and result.reshaped == [low]
    area = result.table.set_index(nm.LABEL).loc[low, nm.AREA]
    assert area == np.count_nonzero(labels == a) + np.count_nonzero(labels == b)
    # split it again from one seed in each former cell
    seeds = [np.unravel_index(np.argmax(ndi.distance_transform_edt(labels == c)), labels.shape)
             for c in (low, high)]  # the deepest pixel of each former cell
    split = split_cell(merged, low, seeds)
    again = apply_correction(result.table, merged, split, image, image_name="s.png")
    assert len(again.added) == 1 and again.reshaped == [low]
    assert len(again.table) == len(table)
    new = again.added[0]
    overlap = np.count_nonzero((split == new) & ((labels == a) | (labels == b)))
    assert overlap == np.count_nonzero(split == new)


def test_a_line_across_a_cell_cuts_it_in_two_and_a_line_beside_it_is_refused(smear):
    _image, labels, table = smear
    cell = _inner(labels, table, 1)[0]
    ys, xs = np.nonzero(labels == cell)
    cy = float(np.median(ys))
    line = [(cy, xs.min() - 3), (cy, xs.max() + 3)]
    split = split_cell_by_line(labels, cell, line)
    parts = [i for i in np.unique(split[labels == cell]) if i]
    assert len(parts) == 2 and cell in parts
    assert np.count_nonzero(split == cell) + np.count_nonzero(split == max(parts)) == len(ys)
    with pytest.raises(ValueError, match="does not cut"):
        split_cell_by_line(labels, cell, [(ys.min() - 10, xs.min()), (ys.min() - 10, xs.max())])
    with pytest.raises(ValueError, match="two cells"):
        merge_cells(labels, [cell])


def test_the_vectors_follow_the_corrected_cells(smear, tiny_backbone):
    from napari_reddino.embed.per_cell import cell_embeddings

    image, labels, table = smear
    cell = _inner(labels, table, 1)[0]
    full = cell_embeddings(image, labels, tiny_backbone, pooling="cls_crop", image_name="s.png")
    table = table.assign(**{nm.EMBEDDING_ROW: full.rows_for("s.png", table[nm.LABEL])})
    after = labels.copy()
    ys, _ = np.nonzero(labels == cell)
    after[(labels == cell) & (np.arange(labels.shape[0])[:, None] > np.median(ys))] = 0
    result = apply_correction(table, labels, after, image, image_name="s.png",
                              embeddings=full, backbone=tiny_backbone)
    truth = cell_embeddings(image, after, tiny_backbone, pooling="cls_crop", image_name="s.png")
    rows = result.table.set_index(nm.LABEL)[nm.EMBEDDING_ROW]
    np.testing.assert_allclose(result.embeddings.vectors[rows[cell]],
                               truth.vectors[truth.rows_for("s.png", [cell])[0]], atol=1e-5)
    other = int(table[nm.LABEL][table[nm.LABEL] != cell].iloc[0])
    np.testing.assert_array_equal(result.embeddings.vectors[rows[other]],
                                  full.vectors[full.rows_for("s.png", [other])[0]])
    assert not np.array_equal(result.embeddings.vectors[rows[cell]],
                              full.vectors[full.rows_for("s.png", [cell])[0]])


def test_an_erased_cell_alone_loses_its_row_and_nothing_is_measured(smear):
    image, labels, table = smear
    gone = _inner(labels, table, 1)[0]
    after = np.where(labels == gone, 0, labels)
    result = apply_correction(table, labels, after, image, image_name="s.png")
    assert result.removed == [gone] and not result.measured
    assert gone not in set(result.table[nm.LABEL]) and len(result.table) == len(table) - 1
