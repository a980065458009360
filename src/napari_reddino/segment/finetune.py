"""Teach Cellpose from hand-corrected smears: cellpose's own training, scored on held-back ones.

The cellpose GUI's loop is "correct, then retrain"; here the corrections are made in napari (the
Labels layer's brush, eraser, merge and split) and the training is cellpose's ``train_seg``
itself, never a copy. A few smears are held back and both the starting model and the trained
one segment them, so the user sees whether the new model is better before choosing it. On a
CPU the first epoch's time is extrapolated and reported, as training can take hours there.
"""

from __future__ import annotations

import logging
import math
import queue
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion

_EPOCH_LINE = re.compile(r"^(\d+), train_loss=([\d.naninf]+).*time ([\d.]+)s")


@dataclass
class FineTuned:
    """The trained weights file and the held-back smears' F1 at IoU 0.5, before and after."""

    model_path: Path
    base_f1: float
    new_f1: float
    n_train: int
    n_test: int
    seconds: float

    def summary(self) -> str:
        return (f"trained on {self.n_train} smears in {self.seconds / 60:.1f} min: F1 at IoU 0.5 "
                f"on {self.n_test} held-back smears {self.base_f1:.3f} -> {self.new_f1:.3f}")


class _EpochLog(logging.Handler):
    """Passes cellpose's per-epoch log lines (epoch, loss, elapsed s) to a queue."""

    def __init__(self, out: queue.Queue):
        super().__init__(logging.INFO)
        self.out = out

    def emit(self, record):
        found = _EPOCH_LINE.match(record.getMessage())
        if found:
            self.out.put((int(found.group(1)), float(found.group(2)), float(found.group(3))))


def _f1(model, images, truths, diameter) -> float:
    from napari_reddino.segment.metrics import instance_score

    tp = fp = fn = 0
    for image, truth in zip(images, truths):
        masks = model.eval(image, channel_axis=2, diameter=diameter)[0]
        score = instance_score(np.asarray(truth), np.asarray(masks))
        tp, fp, fn = tp + score.tp, fp + score.fp, fn + score.fn
    return 2 * tp / (2 * tp + fp + fn) if (tp + fp + fn) else 1.0


def split_held_back(n: int, fraction: float = 0.25, seed: int = 0) -> tuple[list, list]:
    """(train, test) smear indices: at least one of each when there are two smears or more."""
    if n < 2:
        raise ValueError(f"training needs at least 2 corrected smears (one is held back to "
                         f"score the model), got {n}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = min(n - 1, max(1, math.ceil(n * fraction)))
    return sorted(order[n_test:].tolist()), sorted(order[:n_test].tolist())


def iter_finetune_cellpose(
    images: Sequence[np.ndarray], labels: Sequence[np.ndarray], out_dir: str | Path, *,
    base_model: str = DEFAULTS.cellpose_model, model_name: str = "cellpose_corrected",
    n_epochs: int = 100, learning_rate: float = 1e-5, weight_decay: float = 0.1,
    diameter: float | None = None, gpu="auto", held_back: float = 0.25, seed: int = 0,
    cancel: threading.Event | None = None,
) -> ProgressGen[FineTuned]:
    """Fine-tune ``base_model`` on corrected smears; returns :class:`FineTuned`.

    Progress reports every epoch cellpose logs, with the time left extrapolated from the first.
    ``cancel`` stops training at the next forward pass (the file is then not written).
    """
    from cellpose import models, train

    from napari_reddino.segment.cellpose_backend import _use_gpu, resolve_cellpose_weights

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} label images")
    train_ids, test_ids = split_held_back(len(images), held_back, seed)
    weights = resolve_cellpose_weights(base_model)
    use_gpu = _use_gpu(gpu)
    rgb = [np.asarray(image)[..., :3] for image in images]
    masks = [np.asarray(lab).astype(np.int32) for lab in labels]
    total = n_epochs + 2
    Path(out_dir, "models").mkdir(parents=True, exist_ok=True)  # where train_seg saves
    yield Progress(0, total, f"scoring {base_model} on {len(test_ids)} held-back smears")
    base = models.CellposeModel(gpu=use_gpu, pretrained_model=str(weights))
    base_f1 = _f1(base, [rgb[i] for i in test_ids], [masks[i] for i in test_ids], diameter)
    model = models.CellposeModel(gpu=use_gpu, pretrained_model=str(weights))
    model.net.register_forward_pre_hook(lambda *_: check_cancel(cancel))
    epochs: queue.Queue = queue.Queue()
    handler = _EpochLog(epochs)
    logger = logging.getLogger("cellpose.train")
    logger.addHandler(handler)
    logger.setLevel(min(logger.level or logging.INFO, logging.INFO))
    outcome: dict = {}

    def work():
        try:
            outcome["path"] = train.train_seg(
                model.net, train_data=[rgb[i] for i in train_ids],
                train_labels=[masks[i] for i in train_ids],
                test_data=[rgb[i] for i in test_ids], test_labels=[masks[i] for i in test_ids],
                channel_axis=2, n_epochs=n_epochs, learning_rate=learning_rate,
                weight_decay=weight_decay, save_path=str(out_dir), model_name=model_name,
                min_train_masks=1, save_every=max(n_epochs, 1))[0]
        except BaseException as error:  # re-raised in the caller's thread
            outcome["error"] = error

    start = time.perf_counter()
    worker = threading.Thread(target=work, name="cellpose-train", daemon=True)
    worker.start()
    try:
        while worker.is_alive() or not epochs.empty():
            try:
                epoch, loss, elapsed = epochs.get(timeout=0.5)
            except queue.Empty:
                continue
            per_epoch = elapsed / (epoch + 1)
            left = per_epoch * (n_epochs - epoch - 1)
            yield Progress(epoch + 1, total, f"epoch {epoch + 1}/{n_epochs}: loss {loss:.3f}, "
                           f"about {left / 60:.0f} min left on the {'GPU' if use_gpu else 'CPU'}")
        worker.join()
    finally:
        logger.removeHandler(handler)
    if "error" in outcome:
        raise outcome["error"]
    seconds = time.perf_counter() - start
    path = Path(outcome["path"])
    yield Progress(total - 1, total, "scoring the trained model on the held-back smears")
    trained = models.CellposeModel(gpu=use_gpu, pretrained_model=str(path))
    new_f1 = _f1(trained, [rgb[i] for i in test_ids], [masks[i] for i in test_ids], diameter)
    result = FineTuned(path, base_f1, new_f1, len(train_ids), len(test_ids), seconds)
    yield Progress(total, total, result.summary())
    return result


def finetune_cellpose(images, labels, out_dir, **kwargs) -> FineTuned:
    """Sync wrapper of :func:`iter_finetune_cellpose`."""
    return run_to_completion(iter_finetune_cellpose(images, labels, out_dir, **kwargs))
