"""Feature spaces: standardized morphology, embedding, both, built from a cell table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_reddino.explore.spaces import (
    DEFAULT_SPACE,
    available_spaces,
    combine,
    resolve_space,
    space_matrix,
    standardize,
)


def _table(n=50, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image": "s", "label": np.arange(n), "embedding_row": np.arange(n)[::-1],
        "morph_area": rng.normal(1000, 100, n), "morph_circularity": rng.uniform(0.8, 1, n),
        "area": rng.normal(1000, 100, n),  # not a morphology column: left out
    })


def test_standardize_is_robust_finite_and_saturates_outliers():
    x = np.c_[np.arange(101.0), np.full(101, 3.0), np.r_[np.zeros(100), 1e9]]
    x[5, 0] = np.nan
    z = standardize(x)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    assert abs(z[50, 0]) < 0.02 and z[5, 0] == 0.0  # median -> 0, NaN -> typical
    assert np.abs(z[:, 0]).max() < 3 and (z[:, 1] == 0).all()  # constant column -> 0
    assert 2.9 < z[100, 2] < 3.0  # an outlier saturates, it does not squash the others
    # near-identity in the bulk (robust z = (x - median) / 1.4826 MAD), order kept in the tail
    center = np.nanmedian(x[:, 0])
    robust = (60 - center) / (1.4826 * np.nanmedian(np.abs(x[:, 0] - center)))
    assert abs(z[60, 0] - robust) < 0.002 and np.all(np.diff(z[6:, 0]) > 0)


def test_each_block_of_both_carries_its_share_of_the_variance():
    rng = np.random.default_rng(0)
    morph, emb = standardize(rng.normal(size=(2000, 10))), rng.normal(size=(2000, 300)) * 7
    for weight in (0.5, 0.8):
        both = combine(morph, emb, morphology_weight=weight)
        assert both.shape == (2000, 310)
        m_var, e_var = both[:, :10].var(0).sum(), both[:, 10:].var(0).sum()
        assert m_var / (m_var + e_var) == pytest.approx(weight, abs=0.05)
    with pytest.raises(ValueError, match="weight"):
        combine(morph, emb, morphology_weight=2)


def test_space_matrix_rows_follow_the_table():
    table = _table()
    vectors = np.arange(50 * 4, dtype=np.float32).reshape(50, 4)
    emb = space_matrix(table, vectors, "embedding")
    np.testing.assert_array_equal(emb, vectors[::-1])  # through embedding_row
    morph = space_matrix(table, None, "morphology")
    assert morph.shape == (50, 2)  # only the morph_* columns
    np.testing.assert_allclose(np.median(morph, axis=0), 0, atol=1e-6)
    both = space_matrix(table, vectors, "both")
    assert both.shape == (50, 6)
    aligned = space_matrix(table, vectors[::-1], "embedding", row_column=None)
    np.testing.assert_array_equal(aligned, emb)


def test_available_and_default_spaces_and_clear_errors():
    table = _table()
    vectors = np.zeros((50, 4), np.float32)
    assert available_spaces(table, vectors) == ["embedding", "morphology", "both"]
    assert resolve_space(None, table, vectors) == DEFAULT_SPACE
    plain = table.drop(columns=["morph_area", "morph_circularity"])
    assert available_spaces(plain, vectors) == ["embedding"]
    assert resolve_space(None, plain, vectors) == "embedding"  # older tables still work
    with pytest.raises(ValueError, match="morph_"):
        space_matrix(plain, vectors, "both")
    with pytest.raises(ValueError, match="Embed"):
        space_matrix(table, None, "embedding")
    with pytest.raises(ValueError, match="unknown feature space"):
        space_matrix(table, vectors, "shape")


def test_the_default_space_falls_back_where_the_cells_lack_it_and_others_do_not():
    """``--features morphology`` (the CLI's default), ``use_rep="morphology"`` (``rd.tl``'s) and
    no choice at all resolve alike; a space other than the default is taken as asked."""
    table, vectors = _table(), np.zeros((50, 4), np.float32)
    plain = table.drop(columns=["morph_area", "morph_circularity"])
    assert resolve_space(DEFAULT_SPACE, table, vectors) == DEFAULT_SPACE
    assert resolve_space(DEFAULT_SPACE, plain, vectors) == resolve_space(None, plain, vectors)
    assert resolve_space("both", plain, vectors) == "both"  # space_matrix then says what lacks
    with pytest.raises(ValueError, match="unknown feature space"):
        resolve_space("shape", table, vectors)
    with pytest.raises(ValueError, match="neither"):
        resolve_space(None, plain, None)
