"""Cells arrive classified: a reference model's classes for every counted cell of a table.

Why one function for ``rd.tl.annotate``, ``napari-reddino annotate`` and the labeling dock: the
rules must not drift between them. Manual labels are never overwritten (they keep
``class_source`` manual); every other counted cell gets the model's class with
``class_source`` predicted and its calibrated probability in ``confidence``, or no class when
the model leaves it unassigned (low probability, or unlike its training cells; the best guess
stays in ``predicted_class``, the reason in ``unassigned_reason``). Objects that are not counted
get no prediction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.label.counting import counted_rows
from napari_reddino.label.reference import DEFAULT_REFERENCE, ReferenceModel, manual_classes


def resolve_model(model=None) -> ReferenceModel:
    """A ``ReferenceModel`` from itself, a folder, a bundled name, or None (the default one)."""
    if isinstance(model, ReferenceModel):
        return model
    return ReferenceModel.load(DEFAULT_REFERENCE if model is None else model)


def cluster_majority(clusters, classes, rows) -> np.ndarray:
    """Each row's cluster's most common class among ``rows`` (None where the cluster has none;
    ties go to the class named first alphabetically, so reruns agree)."""
    clusters = np.asarray(clusters).astype(str)
    classes = np.asarray(classes, dtype=object)
    out = np.full(len(classes), None, dtype=object)
    for cluster in np.unique(clusters[rows]):
        members = rows & (clusters == cluster)
        counts = pd.Series(classes[members]).dropna().value_counts()
        if len(counts):
            best = sorted(counts.index[counts == counts.max()])[0]
            out[clusters == cluster] = best
    return out


def annotate_table(table: pd.DataFrame, model=None, *,
                   counted_only: bool = DEFAULTS.counted_only,
                   vote_clusters: bool = False) -> pd.DataFrame:
    """A copy of ``table`` with ``class``, ``class_source``, ``confidence``,
    ``predicted_class``, ``assigned`` and ``unassigned_reason`` from the reference ``model``.

    ``vote_clusters``: assigned predictions take their cluster's majority class (``cluster``
    column), with the cell's probability of that class; manual labels still win.
    """
    model = resolve_model(model)
    out = table.copy()
    manual = manual_classes(table)
    is_manual = np.array([c is not None for c in manual], bool)
    rows = counted_rows(table, counted_only) & ~is_manual
    prediction = model.predict(table)
    predicted = np.where(rows, prediction["class"].to_numpy(dtype=object), None)
    probability = prediction["probability"].to_numpy(np.float32).copy()
    assigned = rows & prediction["assigned"].to_numpy(bool)
    if vote_clusters and nm.CLUSTER in table.columns and assigned.any():
        majority = cluster_majority(table[nm.CLUSTER], predicted, assigned)
        probabilities = model.predict_proba(table)
        index = {c: i for i, c in enumerate(model.classes)}
        for i in np.flatnonzero(assigned & (majority != None)):  # noqa: E711 (object array)
            predicted[i] = majority[i]
            probability[i] = probabilities[i, index[majority[i]]]
    classes = np.where(is_manual, manual, np.where(assigned, predicted, None)).astype(object)
    source = np.where(is_manual, nm.MANUAL, np.where(assigned, nm.PREDICTED, None))
    out[nm.CLASS] = classes
    out[nm.CLASS_SOURCE] = source.astype(object)
    out[nm.CONFIDENCE] = np.where(is_manual, 1.0, np.where(rows, probability, np.nan)
                                  ).astype(np.float32)
    out[nm.PREDICTED_CLASS] = predicted
    out[nm.ASSIGNED] = assigned
    reasons = np.where(rows, prediction["reason"].to_numpy(dtype=object), "")
    out[nm.UNASSIGNED_REASON] = np.where(assigned, "", reasons).astype(object)
    return out


def annotation_summary(table: pd.DataFrame) -> str:
    """One line: how many cells were predicted, left unassigned and kept manual."""
    source = table[nm.CLASS_SOURCE].astype(str).to_numpy()
    predicted = int((source == nm.PREDICTED).sum())
    manual = int((source == nm.MANUAL).sum())
    unassigned = int(((table[nm.UNASSIGNED_REASON].astype(str) != "")).sum())
    counts = table.loc[source == nm.PREDICTED, nm.CLASS].value_counts().to_dict()
    return (f"{predicted} cells predicted, {unassigned} left unassigned, {manual} manual labels "
            f"kept; predicted: {counts}")
