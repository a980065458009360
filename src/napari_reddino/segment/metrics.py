"""Instance-segmentation scores against truth: IoU from a label-pair contingency, matching, F1.

The contingency is built only over overlapping (truth, prediction) pairs, so it stays small for
smears with thousands of cells. At IoU >= 0.5 every object has at most one partner above the
threshold, so greedy matching by descending IoU equals the optimal (Hungarian) matching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class InstanceScore:
    """Counts and rates of one comparison (ignored objects are in none of the counts)."""

    tp: int
    fp: int
    fn: int

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 1.0


def overlap_pairs(truth: np.ndarray, pred: np.ndarray):
    """Overlapping (truth id, pred id) pairs with their IoU, from the pixel contingency."""
    truth = np.asarray(truth)
    pred = np.asarray(pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth {truth.shape} and prediction {pred.shape} differ in shape")
    t = truth.ravel().astype(np.int64)
    p = pred.ravel().astype(np.int64)
    both = (t > 0) & (p > 0)
    width = int(p.max()) + 1 if p.size else 1
    keys, intersection = np.unique(t[both] * width + p[both], return_counts=True)
    t_ids, p_ids = keys // width, keys % width
    t_area = np.bincount(t, minlength=int(t.max()) + 1 if t.size else 1)
    p_area = np.bincount(p, minlength=width)
    union = t_area[t_ids] + p_area[p_ids] - intersection
    return t_ids, p_ids, intersection / union


def match_instances(truth: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5):
    """One-to-one matches with IoU >= threshold: (truth ids, pred ids, IoUs), best first."""
    t_ids, p_ids, iou = overlap_pairs(truth, pred)
    order = np.argsort(-iou, kind="stable")
    used_t, used_p, matches = set(), set(), []
    for i in order:
        if iou[i] < iou_threshold:
            break
        if t_ids[i] in used_t or p_ids[i] in used_p:
            continue
        used_t.add(t_ids[i])
        used_p.add(p_ids[i])
        matches.append(i)
    matches = np.asarray(matches, dtype=np.int64)
    return t_ids[matches], p_ids[matches], iou[matches]


def instance_score(truth: np.ndarray, pred: np.ndarray, *, iou_threshold: float = 0.5,
                   ignore_truth=()) -> InstanceScore:
    """TP/FP/FN of ``pred`` against ``truth``.

    ``ignore_truth``: truth ids that count neither way (distractors, cells cut by the border):
    missing them is no FN, and a prediction matching one is no FP.
    """
    t_ids = match_instances(truth, pred, iou_threshold)[0]
    ignored = np.isin(t_ids, np.asarray(list(ignore_truth), dtype=np.int64))
    all_truth = np.unique(truth)
    all_truth = all_truth[all_truth > 0]
    n_truth = int((~np.isin(all_truth, np.asarray(list(ignore_truth), dtype=np.int64))).sum())
    all_pred = np.unique(pred)
    n_pred = int((all_pred > 0).sum()) - int(ignored.sum())
    tp = int((~ignored).sum())
    return InstanceScore(tp=tp, fp=n_pred - tp, fn=n_truth - tp)
