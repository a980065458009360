"""A reference model of red-cell morphology: cells arrive classified, the hematologist corrects.

Why: without it every session starts from zero labels. The model reads the cell table's
``morph_*`` columns (absolute and relative to the cell's smear, ``reference_features``),
boosted trees score the classes, one temperature fitted on out-of-fold scores of held-out
smears calibrates them, and a cell is left unassigned when its calibrated probability is below
the model's threshold or when it lies farther from the training cells than 99 % of them lie
from each other (a cell unlike anything the model saw). Files are ``.npz`` + ``.json`` (no
pickle: loading a model must not run code). The training cells travel with the model (float16)
so that :meth:`ReferenceModel.update` can refit on them plus a user's manual labels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.label import boosted_trees
from napari_reddino.label.calibration import fit_temperature, softmax
from napari_reddino.label.reference_features import (
    morphology_columns,
    reference_features,
    spread_floor,
)
from napari_reddino.label.reference_scores import (
    FORMAT_VERSION,
    model_card,
    score_report,
    threshold_for,
)
from napari_reddino.segment.counted import counted_mask

#: the model bundled with the plugin (``napari_reddino/weights/<name>``)
DEFAULT_REFERENCE = "reference-rbc12"
WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MODEL_FILE, ARRAYS_FILE, CARD_FILE = "model.json", "model.npz", "README.md"
#: reasons a cell is left unassigned (``predict``'s ``reason`` column; "" when assigned)
LOW_PROBABILITY = "probability below the model's threshold"
OUT_OF_DISTRIBUTION = "unlike the cells the model was trained on"
#: neighbors whose mean distance measures how far a cell is from the training cells
K_DISTANCE = 5
#: defaults chosen with whole smears held out (benchmarks/reference_model.py)
DEFAULT_PARAMS = {"mode": "absolute+smear", "max_iter": 80, "learning_rate": 0.15,
                  "max_leaf_nodes": 15, "l2_regularization": 1.0, "balanced": True,
                  "assign_precision": 0.9, "ood_quantile": 0.99, "manual_weight": 3.0,
                  "n_folds": 5, "random_state": 0}


def _codes(labels, classes: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in labels], np.int64)


def _fit_logits(x, codes, n_classes: int, params: dict, weights=None):
    """Trees over the classes present in ``codes``; a function rows -> (N, n_classes) logits
    (absent classes get a large negative score)."""
    present = np.unique(codes)
    if len(present) < 2:
        raise ValueError("a reference model needs labeled cells of at least two classes")
    local = np.searchsorted(present, codes)
    trees = boosted_trees.fit_trees(
        x, local, len(present), sample_weight=weights, max_iter=params["max_iter"],
        learning_rate=params["learning_rate"], max_leaf_nodes=params["max_leaf_nodes"],
        l2_regularization=params["l2_regularization"], random_state=params["random_state"])

    def logits(rows):
        out = np.full((len(rows), n_classes), -30.0)
        out[:, present] = boosted_trees.tree_scores(trees, rows)
        return out
    logits.trees, logits.present = trees, present
    return logits


def _weights(codes, manual, params: dict) -> np.ndarray:
    """Class-balanced sample weights (macro F1 counts rare classes as much as common ones),
    times ``manual_weight`` for a user's own labels."""
    counts = np.bincount(codes)
    w = (len(codes) / (np.count_nonzero(counts) * counts[codes])) if params["balanced"] \
        else np.ones(len(codes))
    return w * np.where(manual, params["manual_weight"], 1.0)


def grouped_folds(codes, groups, n_folds: int, random_state: int = 0):
    """Folds that hold out whole smears (``groups``), classes spread evenly where possible."""
    import warnings

    from sklearn.model_selection import StratifiedGroupKFold

    n_folds = int(min(n_folds, len(np.unique(groups))))
    if n_folds < 2:
        raise ValueError("cross-validation needs cells of at least two smears")
    splitter = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # classes rarer than the folds
        return list(splitter.split(np.zeros(len(codes)), codes, groups))


def _half(x) -> np.ndarray:
    """float16 (as the training cells are stored), clipped to its range rather than infinite."""
    return np.clip(np.asarray(x, np.float64), -6.5e4, 6.5e4).astype(np.float16)


def _mean_knn_distance(reference, queries, k: int, exclude_self: bool = False) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    k = int(min(k + exclude_self, len(reference)))
    distances, _ = NearestNeighbors(n_neighbors=k).fit(reference).kneighbors(queries)
    return distances[:, int(exclude_self):].mean(axis=1)


@dataclass
class ReferenceModel:
    """Classes, inputs, fitted trees, calibration and the training cells of a reference model."""

    classes: list[str]
    columns: list[str]
    params: dict
    trees: dict
    temperature: float
    threshold: float
    center: np.ndarray
    scale: np.ndarray
    ood_radius: float
    train_x: np.ndarray  # float16, the mode's features of the training cells
    train_codes: np.ndarray
    train_groups: np.ndarray
    train_manual: np.ndarray
    floor: np.ndarray  # the smallest per-smear spread of each input column (spread_floor)
    scores: dict = field(default_factory=dict)
    name: str = "reference"
    source: str = ""  # where the training cells came from, and their licence (model card)

    # -- fitting ---------------------------------------------------------------------------
    @classmethod
    def fit(cls, table: pd.DataFrame, classes, groups=None, *, name: str = "reference",
            source: str = "", cross_validate: bool = True, **params) -> ReferenceModel:
        """Fit on the rows of ``table`` with a class (``classes``: one name or None per row).

        Per-smear statistics use every counted cell of ``table``, labeled or not; ``groups``
        (default: the ``image`` column) keep whole smears together in cross-validation, which
        calibrates the probabilities and picks the threshold (``cross_validate=False`` skips
        it: temperature 1, threshold 0.5; for quick tests).
        """
        params = {**DEFAULT_PARAMS, **params}
        columns = morphology_columns(table)
        floor = spread_floor(table, columns, counted_mask(table)) if columns else None
        x, labels, groups = _training_rows(table, classes, groups, params["mode"], columns,
                                           floor)
        names = sorted(set(labels))
        model = cls._from_arrays(x, labels, groups, np.zeros(len(labels), bool), names,
                                 columns, params, name, floor)
        model.source = source
        if cross_validate:
            model.cross_validate()
        return model

    @classmethod
    def _from_arrays(cls, x, labels, groups, manual, names, columns, params, name, floor):
        x16 = _half(x)  # what is stored is what is fitted on: refits agree
        x = x16.astype(np.float64)
        codes = _codes(labels, names)
        logits = _fit_logits(x, codes, len(names), params, _weights(codes, manual, params))
        center = np.nanmedian(x, axis=0)
        scale = np.nan_to_num(np.nanpercentile(x, 75, axis=0) - np.nanpercentile(x, 25, axis=0))
        std = np.nan_to_num(np.nanstd(x, axis=0))  # sparse columns (dot counts) have no IQR
        scale = np.where(scale > 1e-9, scale, np.where(std > 1e-9, std, 1.0))
        model = cls(classes=list(names), columns=list(columns), params=dict(params),
                    trees=_full_trees(logits, len(names)), temperature=1.0, threshold=0.5,
                    center=center, scale=scale, ood_radius=np.inf, train_x=x16,
                    train_codes=codes, train_groups=np.asarray(groups).astype(str),
                    train_manual=np.asarray(manual, bool), floor=np.asarray(floor), name=name)
        z = model._scaled(x)
        inside = _mean_knn_distance(z, z, K_DISTANCE, exclude_self=True)
        model.ood_radius = float(np.quantile(inside, params["ood_quantile"]))
        return model

    def cross_validate(self, n_folds: int | None = None, progress=None) -> dict:
        """Grouped k-fold (whole smears held out) on the training cells: sets the temperature,
        the threshold and ``scores`` (accuracy, macro F1, per class, ECE, coverage)."""
        params = self.params
        x = self.train_x.astype(np.float64)
        folds = grouped_folds(self.train_codes, self.train_groups,
                              n_folds or params["n_folds"], params["random_state"])
        logits = np.zeros((len(x), len(self.classes)))
        for i, (train, test) in enumerate(folds):
            if progress is not None:
                progress(i, len(folds), "cross-validating the reference model")
            codes = self.train_codes[train]
            fitted = _fit_logits(x[train], codes, len(self.classes), params,
                                 _weights(codes, self.train_manual[train], params))
            logits[test] = fitted(x[test])
        self.temperature = fit_temperature(logits, self.train_codes)
        probabilities = softmax(logits, self.temperature)
        self.threshold = threshold_for(probabilities, self.train_codes,
                                       params["assign_precision"])
        self.scores = score_report(logits, self.train_codes, self.classes, folds,
                                   self.temperature, self.threshold)
        return self.scores

    def update(self, table: pd.DataFrame, classes=None, groups=None, *,
               cross_validate: bool = False) -> ReferenceModel:
        """A new model fitted on the reference cells plus ``table``'s manual labels.

        ``classes`` default: the ``class`` of rows whose ``class_source`` is manual. A user's
        cells weigh ``manual_weight`` times a reference cell; a class the model did not know
        becomes a new class. Calibration and threshold are kept unless ``cross_validate``
        (what :meth:`save` does before writing a model without scores).
        """
        if classes is None:
            classes = manual_classes(table)
        x, labels, groups = _training_rows(table, classes, groups, self.params["mode"],
                                           self.columns, self.floor)
        groups = np.array([f"user:{g}" for g in groups], dtype=object)
        names = self.classes + sorted(set(labels) - set(self.classes))
        ref_labels = [self.classes[c] for c in self.train_codes]
        model = type(self)._from_arrays(
            np.vstack([self.train_x.astype(np.float64), x]), ref_labels + list(labels),
            np.concatenate([self.train_groups.astype(object), groups]),
            np.concatenate([self.train_manual, np.ones(len(labels), bool)]), names,
            self.columns, self.params, self.name, self.floor)
        model.temperature, model.threshold = self.temperature, self.threshold
        model.source = f"{self.source} + a user's manual labels".lstrip(" +")
        if cross_validate:
            model.cross_validate()
        return model

    # -- prediction ------------------------------------------------------------------------
    def _scaled(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.nan_to_num((x - self.center) / self.scale), -50, 50)

    def features(self, table: pd.DataFrame) -> np.ndarray:
        """The model's input matrix for every row of ``table`` (per-smear statistics over the
        smear's counted cells), rounded to float16 as the training cells are."""
        x, _ = reference_features(table, self.columns, self.params["mode"],
                                  counted=counted_mask(table), floor=self.floor)
        return _half(x).astype(np.float64)

    def predict_proba(self, table: pd.DataFrame) -> np.ndarray:
        """Calibrated class probabilities (N x classes) of every row of ``table``."""
        x = self.features(table)
        return softmax(boosted_trees.tree_scores(self.trees, x), self.temperature)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """``class`` (the most probable), ``probability`` (calibrated), ``assigned`` and
        ``reason`` (why not assigned, "" if assigned) per row, indexed as ``table``."""
        x = self.features(table)
        probabilities = softmax(boosted_trees.tree_scores(self.trees, x), self.temperature)
        top = probabilities.argmax(axis=1) if len(x) else np.zeros(0, np.int64)
        distance = self.distance(x) if len(x) else np.zeros(0)
        reason = np.full(len(x), "", dtype=object)
        reason[probabilities.max(axis=1, initial=0) < self.threshold] = LOW_PROBABILITY
        reason[distance > self.ood_radius] = OUT_OF_DISTRIBUTION
        return pd.DataFrame({
            "class": np.asarray(self.classes, dtype=object)[top],
            "probability": probabilities.max(axis=1, initial=0).astype(np.float32),
            "assigned": reason == "", "reason": reason}, index=table.index)

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mean distance of rows ``x`` (model features) to their nearest training cells, in
        the units of the model's radius (``ood_radius``)."""
        z_train = self._scaled(self.train_x.astype(np.float64))
        return _mean_knn_distance(z_train, self._scaled(x), K_DISTANCE)

    # -- files -----------------------------------------------------------------------------
    def save(self, folder: str | Path, *, card: bool = True) -> Path:
        """Write ``model.json`` + ``model.npz`` (+ a model card) to ``folder``; a model without
        cross-validated scores (fresh from :meth:`update`) is cross-validated first."""
        from napari_reddino.io.atomic import write_npz, write_text
        if not self.scores:
            self.cross_validate()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"tree_{k}": v for k, v in self.trees.items()}
        arrays.update(center=self.center, scale=self.scale, floor=self.floor,
                      train_x=self.train_x,
                      train_codes=self.train_codes, train_manual=self.train_manual,
                      train_groups=self.train_groups.astype(str))
        write_npz(folder / ARRAYS_FILE, "reference model", **arrays)
        from napari_reddino import __version__

        meta = {"format_version": FORMAT_VERSION, "plugin_version": __version__,
                "name": self.name, "source": self.source, "classes": self.classes,
                "columns": self.columns, "params": self.params,
                "temperature": self.temperature, "threshold": self.threshold,
                "ood_radius": self.ood_radius, "scores": self.scores}
        write_text(folder / MODEL_FILE, json.dumps(meta, indent=1), "reference model")
        if card:
            write_text(folder / CARD_FILE, model_card(self), "model card")
        return folder

    @classmethod
    def load(cls, folder_or_name: str | Path = DEFAULT_REFERENCE) -> ReferenceModel:
        """A saved model: a folder, or the name of a bundled one (``reference-rbc12``)."""
        folder = Path(folder_or_name)
        if not (folder / MODEL_FILE).is_file() and (WEIGHTS / str(folder_or_name)).is_dir():
            folder = WEIGHTS / str(folder_or_name)
        if not (folder / MODEL_FILE).is_file():
            bundled = sorted(p.name for p in WEIGHTS.glob(f"*/{MODEL_FILE}"))
            raise FileNotFoundError(f"{folder_or_name}: no reference model ({MODEL_FILE}); "
                                    f"bundled: {bundled or 'none'}")
        meta = json.loads((folder / MODEL_FILE).read_text())
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{folder}: model format {meta.get('format_version')}, this "
                             f"plugin reads format {FORMAT_VERSION}")
        with np.load(folder / ARRAYS_FILE, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        trees = {k[5:]: v for k, v in arrays.items() if k.startswith("tree_")}
        return cls(classes=list(meta["classes"]), columns=list(meta["columns"]),
                   params=dict(meta["params"]), trees=trees,
                   temperature=float(meta["temperature"]), threshold=float(meta["threshold"]),
                   center=arrays["center"], scale=arrays["scale"], floor=arrays["floor"],
                   ood_radius=float(meta["ood_radius"]), train_x=arrays["train_x"],
                   train_codes=arrays["train_codes"], train_groups=arrays["train_groups"],
                   train_manual=arrays["train_manual"], scores=dict(meta.get("scores") or {}),
                   name=str(meta.get("name", folder.name)), source=str(meta.get("source", "")))


def manual_classes(table: pd.DataFrame) -> np.ndarray:
    """The manual label of each row (None elsewhere): predicted classes never train a model."""
    out = np.full(len(table), None, dtype=object)
    if nm.CLASS not in table.columns:
        return out
    manual = np.ones(len(table), bool) if nm.CLASS_SOURCE not in table.columns else \
        (table[nm.CLASS_SOURCE].astype(str).to_numpy() == nm.MANUAL)
    values = table[nm.CLASS].astype(object).to_numpy()
    from napari_reddino.io.cell_table import unlabeled_mask

    manual &= ~unlabeled_mask(values)
    out[manual] = values[manual].astype(str)
    return out


def _training_rows(table, classes, groups, mode: str, columns, floor):
    """``(features, labels, groups)`` of the rows of ``table`` that have a class."""
    from napari_reddino.io.cell_table import unlabeled_mask
    classes = np.asarray(classes, dtype=object)
    if len(classes) != len(table):
        raise ValueError(f"{len(classes)} classes for {len(table)} rows")
    rows = ~unlabeled_mask(classes)
    if not rows.any():
        raise ValueError("no labeled cells to fit the reference model on")
    if not columns:
        raise ValueError("the cell table has no morph_* columns: measure morphology first")
    x, _ = reference_features(table, columns, mode, counted=counted_mask(table), floor=floor)
    if groups is None:
        groups = table[nm.IMAGE].astype(str).to_numpy() if nm.IMAGE in table.columns \
            else np.zeros(len(table), dtype=str)
    return x[rows], [str(c) for c in classes[rows]], np.asarray(groups, dtype=object)[rows]


def _full_trees(logits, n_classes: int) -> dict:
    """The arrays of a fitted ``_fit_logits``, class indices mapped to the model's classes."""
    present = logits.present
    trees = dict(logits.trees)
    trees["tree_class"] = present[trees["tree_class"]]
    baseline = np.full(n_classes, -30.0)
    baseline[present] = trees["baseline"]
    trees["baseline"] = baseline
    return trees
