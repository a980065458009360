"""Fine-tune Cellpose from corrected smears with cellpose's own training (#29 item 4)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_reddino.progress import Cancelled
from napari_reddino.segment.finetune import (
    finetune_cellpose,
    iter_finetune_cellpose,
    split_held_back,
)
from napari_reddino.synthetic.smear import synthetic_smear

pytest.importorskip("cellpose")


def _smears(n=3):
    smears = [synthetic_smear((128, 128), seed=40 + i) for i in range(n)]
    return [s.image for s in smears], [s.labels.astype(np.int32) for s in smears]


def test_held_back_smears_are_never_trained_on():
    train, test = split_held_back(8, 0.25, seed=1)
    assert len(test) == 2 and not set(train) & set(test) and sorted(train + test) == list(range(8))
    assert split_held_back(2)[1] and split_held_back(2)[0]
    with pytest.raises(ValueError, match="at least 2 corrected smears"):
        split_held_back(1)


@pytest.mark.slow
def test_training_writes_a_model_cellpose_loads_and_scores_both(tiny_cellpose, tmp_path):
    from napari_reddino.segment.cellpose_backend import cellpose_segment

    images, labels = _smears()
    steps = list(iter_finetune_cellpose(images, labels, tmp_path / "models", n_epochs=2,
                                        learning_rate=1e-4, gpu=False))
    messages = [getattr(s, "message", "") for s in steps]
    assert any("epoch 1/2" in m and "min left on the CPU" in m for m in messages), messages
    result = finetune_cellpose(images, labels, tmp_path / "again", n_epochs=1, gpu=False)
    assert result.model_path.is_file() and result.n_train == 2 and result.n_test == 1
    assert 0.0 <= result.base_f1 <= 1.0 and 0.0 <= result.new_f1 <= 1.0
    assert "held-back" in result.summary()
    masks = cellpose_segment(images[0], model=result.model_path, gpu=False)
    assert masks.shape == images[0].shape[:2]


@pytest.mark.slow
def test_cancel_stops_training_and_writes_no_model(tiny_cellpose, tmp_path):
    images, labels = _smears()
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        finetune_cellpose(images, labels, tmp_path / "models", n_epochs=5, gpu=False,
                          cancel=cancel)
    assert not list((tmp_path / "models").rglob("cellpose_corrected*"))
