"""`napari-reddino annotate` on a small run folder: predicted classes, manual labels kept,
a model refitted on the run's manual labels saved and loaded again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_reddino import names as nm
from napari_reddino.cli.main import main
from napari_reddino.io.cell_table import load_table, save_table
from napari_reddino.label.reference import DEFAULT_REFERENCE, WEIGHTS, ReferenceModel
from napari_reddino.segment.counted import counted_mask

FAST = {"max_iter": 10, "max_leaf_nodes": 5, "n_folds": 2, "assign_precision": 0.0}


@pytest.fixture
def run(small_run, tmp_path):
    """A private copy of the shared run (annotate writes into it)."""
    shutil.copytree(small_run.parent, tmp_path / "copy")
    return tmp_path / "copy" / "run"


def _size_classes(table) -> np.ndarray:
    """A known structure: small and large cells by area, one rule per smear."""
    area = table[nm.AREA].to_numpy()
    return np.where(area < np.median(area), "small", "large").astype(object)


def _label_half(run) -> tuple:
    """Manual labels on every other counted cell of the run; the table and those rows."""
    path = run / nm.CELLS_TABLE_FILE
    table = load_table(path)
    rows = counted_mask(table) & (np.arange(len(table)) % 2 == 0)
    table[nm.CLASS] = np.where(rows, _size_classes(table), None)
    table[nm.CLASS_SOURCE] = np.where(rows, nm.MANUAL, None)
    save_table(table, path)
    return table, rows


def test_annotate_with_a_saved_model_keeps_manual_labels(run, tmp_path):
    table = load_table(run / nm.CELLS_TABLE_FILE)
    model = ReferenceModel.fit(table, _size_classes(table), **FAST)
    model_dir = model.save(tmp_path / "size-model")
    _, manual = _label_half(run)
    # manual labels that disagree with the model: they must survive
    labeled = load_table(run / nm.CELLS_TABLE_FILE)
    labeled.loc[manual, nm.CLASS] = "my class"
    save_table(labeled, run / nm.CELLS_TABLE_FILE)
    assert main(["-q", "annotate", str(run), "--model", str(model_dir)]) == 0
    out = load_table(run / nm.CELLS_TABLE_FILE)
    assert (out.loc[manual, nm.CLASS] == "my class").all()
    assert (out.loc[manual, nm.CLASS_SOURCE] == nm.MANUAL).all()
    counted = counted_mask(out)
    others = counted & ~manual
    assert out.loc[others, nm.PREDICTED_CLASS].notna().all()
    predicted = (out[nm.CLASS_SOURCE] == nm.PREDICTED).to_numpy()
    assert predicted.any() and not (predicted & ~counted).any()
    assert (out.loc[predicted, nm.CLASS] == out.loc[predicted, nm.PREDICTED_CLASS]).all()
    assert out.loc[~counted, nm.CLASS_SOURCE].isna().all()
    assert (run / "differential.csv").is_file()


def test_update_model_saves_a_model_that_loads(run, tmp_path):
    table = load_table(run / nm.CELLS_TABLE_FILE)
    base = ReferenceModel.fit(table, np.where(_size_classes(table) == "small", "a", "b"),
                              **FAST).save(tmp_path / "base")
    _label_half(run)
    out_dir = tmp_path / "updated"
    assert main(["-q", "annotate", str(run), "--model", str(base),
                 "--update-model", str(out_dir)]) == 0
    meta = json.loads((out_dir / "model.json").read_text())
    assert {"small", "large", "a", "b"} <= set(meta["classes"])
    assert meta["scores"]["cells"] > 0
    loaded = ReferenceModel.load(out_dir)
    assert loaded.train_manual.sum() > 0
    out = load_table(run / nm.CELLS_TABLE_FILE)
    predicted = out[nm.CLASS_SOURCE] == nm.PREDICTED
    assert set(out.loc[predicted, nm.CLASS]) <= {"small", "large", "a", "b"}


def test_annotate_without_manual_labels_cannot_update(run, tmp_path):
    table = load_table(run / nm.CELLS_TABLE_FILE)
    model_dir = ReferenceModel.fit(table, _size_classes(table), **FAST).save(tmp_path / "m")
    assert main(["-q", "annotate", str(run), "--model", str(model_dir),
                 "--update-model", str(tmp_path / "new")]) == 2


@pytest.mark.skipif(not (WEIGHTS / DEFAULT_REFERENCE / "model.json").is_file(),
                    reason="bundled reference model not exported")
def test_bundled_model_annotates_a_run(run):
    assert main(["-q", "annotate", str(run)]) == 0
    out = load_table(run / nm.CELLS_TABLE_FILE)
    counted = counted_mask(out)
    classes = set(ReferenceModel.load().classes)
    assert out.loc[counted, nm.PREDICTED_CLASS].isin(classes).all()
    assert out.loc[counted, nm.CONFIDENCE].between(0, 1).all()
    reasons = set(out.loc[counted & ~out[nm.ASSIGNED], nm.UNASSIGNED_REASON])
    assert "" not in reasons


def test_tl_annotate_on_anndata_agrees_with_the_table(run, tmp_path):
    import napari_reddino as rd
    from napari_reddino.label.annotate import annotate_table

    table = load_table(run / nm.CELLS_TABLE_FILE)
    model = ReferenceModel.fit(table, _size_classes(table), **FAST)
    adata = rd.read_run(run)
    returned = rd.tl.annotate(adata, model)
    expected = annotate_table(table, model)
    got = adata.obs[nm.PREDICTED_CLASS].astype(object)
    assert list(got.where(got.notna(), None)) == list(expected[nm.PREDICTED_CLASS])
    np.testing.assert_allclose(adata.obs[nm.CONFIDENCE].to_numpy(),
                               expected[nm.CONFIDENCE].to_numpy(), rtol=1e-6)
    assert (adata.obs[nm.CLASS_SOURCE].astype(object) == nm.PREDICTED).any()
    assert len(returned) == adata.n_obs
