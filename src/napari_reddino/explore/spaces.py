"""The spaces cells are compared in: backbone embedding, standardized morphology, or both.

Why: the embedding sees every cell rescaled to one crop size and misses absolute size and stain
density, which the morphology keeps. On the 8,300 matched labeled real cells of Chula RBC-12,
scored from a ``napari-reddino run`` folder (``benchmarks/real_cells.py --from-run``, bundled
backbone) the standardized morphology measures best (linear probe 85.1 / 20-NN 81.2 weighted F1,
against 84.8 / 76.0 for both and 64.2 / 54.8 for the embedding), so ``morphology`` is the default
(``defaults.DEFAULTS.space``) wherever the cells have it. Explorer, propagation, review queue,
suggestions, ``rd.tl`` and the CLI all get their (N, D) matrix from :func:`space_matrix` and
pick the space with :func:`resolve_space`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino.defaults import DEFAULTS
from napari_reddino.morphology.features import feature_columns
from napari_reddino.names import BOTH, EMBEDDING, EMBEDDING_ROW, FEATURE_SPACES, MORPHOLOGY

SPACES = FEATURE_SPACES
DEFAULT_SPACE = DEFAULTS.space
#: Share of the total variance of ``both`` that the morphology block carries.
MORPHOLOGY_WEIGHT = DEFAULTS.morphology_weight
#: Robust z-scores saturate smoothly towards +-this (``c tanh(z / c)``): near-identity for the
#: bulk, while a mis-segmented clump at z = 40 cannot dominate a distance or a probe. Chosen by
#: 5-fold CV on the dev cells over hard clips at 2.5-8 and tanh at 2-4 (3 seeds, every fold
#: agreed): linear probe +0.9 wF1 against a hard clip at 5, 20-NN -0.2, propagation +1 to +2.
_CLIP = 3.0


def standardize(matrix) -> np.ndarray:
    """Robust z-scores per column (median, 1.4826 MAD; std when MAD is 0), softly saturated at
    +-3 (``3 tanh(z / 3)``).

    NaN / inf become 0 (the typical cell), so one bad measurement does not drop a cell.
    """
    x = np.asarray(matrix, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected an (N, D) matrix, got shape {x.shape}")
    x = np.where(np.isfinite(x), x, np.nan)
    if x.shape[0] == 0:
        return x.astype(np.float32)
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            center = np.nanmedian(x, axis=0)
            scale = 1.4826 * np.nanmedian(np.abs(x - center), axis=0)
            std = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-12, scale, std)
    scale = np.where(np.isfinite(scale) & (scale > 1e-12), scale, 1.0)
    z = (x - np.nan_to_num(center)) / scale
    z = np.clip(np.nan_to_num(z, nan=0.0), -1e6, 1e6)
    return (_CLIP * np.tanh(z / _CLIP)).astype(np.float32)


def combine(morphology_z, embedding, *, morphology_weight: float = MORPHOLOGY_WEIGHT):
    """Standardized morphology beside the standardized embedding, each block scaled so that it
    carries ``morphology_weight`` (resp. the rest) of the total variance, whatever its width."""
    if not 0.0 <= morphology_weight <= 1.0:
        raise ValueError(f"morphology_weight must be in [0, 1], got {morphology_weight}")
    m = np.asarray(morphology_z, np.float32)
    e = standardize(embedding)
    if len(m) != len(e):
        raise ValueError(f"{len(m)} morphology rows but {len(e)} embedding rows")
    m = m * np.sqrt(morphology_weight / max(m.shape[1], 1))
    e = e * np.sqrt((1.0 - morphology_weight) / max(e.shape[1], 1))
    return np.concatenate([m, e], axis=1).astype(np.float32)


def has_morphology(table: pd.DataFrame) -> bool:
    return bool(feature_columns(table.columns))


def available_spaces(table: pd.DataFrame, vectors=None) -> list[str]:
    """The spaces a table (and its embedding matrix) can give."""
    spaces = []
    has_embedding = vectors is not None and (EMBEDDING_ROW in table.columns
                                             or len(vectors) == len(table))
    if has_embedding:
        spaces.append(EMBEDDING)
    if has_morphology(table):
        spaces.append(MORPHOLOGY)
        if has_embedding:
            spaces.append(BOTH)
    return spaces


def _embedding_rows(table: pd.DataFrame, vectors, row_column: str | None) -> np.ndarray:
    if vectors is None or (row_column is not None and row_column not in table.columns):
        raise ValueError("this space needs the cell embeddings: run 'Embed cells' first")
    vectors = np.asarray(vectors)
    if row_column is None:  # already one vector per table row
        if len(vectors) != len(table):
            raise ValueError(f"{len(vectors)} vectors for {len(table)} cells")
        return vectors
    rows = pd.to_numeric(table[row_column], errors="coerce").to_numpy()
    bad = ~np.isfinite(rows) | (rows < 0) | (rows >= len(vectors))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} cell(s) have no embedding row; re-run the embedding")
    return vectors[rows.astype(np.int64)]


def space_matrix(table: pd.DataFrame, vectors=None, space: str = DEFAULT_SPACE, *,
                 row_column: str | None = EMBEDDING_ROW,
                 morphology_weight: float = MORPHOLOGY_WEIGHT) -> np.ndarray:
    """The (N, D) float32 matrix of ``space`` for the table's rows (in table order).

    ``vectors`` is the embedding matrix that ``table[row_column]`` points into; morphology comes
    from the table's ``morph_*`` columns (``morphology.morphology_features`` with the prefix).
    ``row_column=None``: ``vectors`` already holds one row per table row (a ``LayerCells``).
    """
    if space not in SPACES:
        raise ValueError(f"unknown feature space {space!r}: use one of {list(SPACES)}")
    if space == EMBEDDING:
        return np.ascontiguousarray(_embedding_rows(table, vectors, row_column), np.float32)
    columns = feature_columns(table.columns)
    if not columns:
        raise ValueError(
            f"the '{space}' space needs the morphology columns (morph_*): the cell table has "
            "none; embed the smear again (the embedding dock measures them), open the .h5ad "
            "saved with its cells, or run 'napari-reddino run' on it"
        )
    morph = standardize(table[columns].to_numpy(np.float64))
    if space == MORPHOLOGY:
        return morph
    return combine(morph, _embedding_rows(table, vectors, row_column),
                   morphology_weight=morphology_weight)


def resolve_space(space: str | None, table: pd.DataFrame, vectors=None) -> str:
    """The space to use for ``space`` (``None``: the default one).

    Any space but the default is taken as asked (:func:`space_matrix` says what it lacks). The
    default falls back to the first space the cells have, so tables written before the
    morphology columns existed still work wherever no space was chosen.
    """
    if space and space != DEFAULT_SPACE:
        if space not in SPACES:
            raise ValueError(f"unknown feature space {space!r}: use one of {list(SPACES)}")
        return space
    spaces = available_spaces(table, vectors)
    if DEFAULT_SPACE in spaces:
        return DEFAULT_SPACE
    if not spaces:
        raise ValueError("the cells have neither an embedding nor morphology columns")
    return spaces[0]
