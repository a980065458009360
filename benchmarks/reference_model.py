"""The reference model of red-cell morphology on Chula RBC-12, whole smears held out.

    python benchmarks/reference_model.py                 # compare inputs x models, then the
                                                         # chosen model's per-class table
    python benchmarks/reference_model.py --export        # ... and write the bundled model
    python benchmarks/reference_model.py --limit 60 --no-compare

Every smear's full cell table (reference_data.py: classical segmentation, ``morph_*`` columns,
``counted``; cached under /tmp) with the class of each matched labeled center. Training cells:
the counted, matched cells of the 12 named classes ("uncategorised", 24 cells in 5 smears with
no morphological definition, is left out: a cell the model is unsure of is left unassigned
instead). Scores: grouped 5-fold cross-validation by image (StratifiedGroupKFold), so a smear
is never on both sides, beside the baselines measured before (a model fitted on 98 smears and
applied to 40 others: gradient boosting 0.680 / 0.613) and the Chula RBC-12 authors' 0.921 /
0.868 (EfficientNet-B1, cells of one smear on both sides of the split).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from reference_data import TRUE_CLASS, load_tables

from napari_reddino.label.calibration import expected_calibration_error, softmax
from napari_reddino.label.reference import (
    DEFAULT_PARAMS,
    WEIGHTS,
    ReferenceModel,
    _fit_logits,
    _weights,
    grouped_folds,
)
from napari_reddino.label.reference_features import (
    FEATURE_MODES,
    morphology_columns,
    reference_features,
)
from napari_reddino.label.reference_scores import per_class_lines

EXCLUDED_CLASS = "uncategorised"
BASELINES = (("earlier: logistic regression, 98 -> 40 smears", 0.644, 0.589),
             ("earlier: gradient boosting, 98 -> 40 smears", 0.680, 0.613),
             ("Chula RBC-12 authors (EfficientNet-B1, same smears)", 0.921, 0.868))
TARGET = {"accuracy": 0.85, "macro_f1": 0.75, "ece": 0.05}
SOURCE = ("the development split of Chula RBC-12 (293 Wright-stained smears, 640x480, Chula PIC "
          "Lab 2021; Naruenatthanaset et al., \"Red Blood Cell Segmentation with Overlapping Cell "
          "Separation and Classification on Imbalanced Dataset\"), MIT license; the counted "
          "cells matched to its labeled centers, the 24 'uncategorised' cells left out; no image "
          "is bundled, only the fitted trees and the training cells' features (float16)")


def training_classes(table) -> np.ndarray:
    """The class of each counted, matched cell of the 12 classes (None elsewhere)."""
    truth = table[TRUE_CLASS].astype(object).to_numpy()
    keep = table["counted"].to_numpy(bool) & (truth != None) & (truth != EXCLUDED_CLASS)  # noqa: E711
    return np.where(keep, truth, None)


def compare(table, classes, modes, models) -> list[tuple]:
    """Grouped-CV accuracy, macro F1 and ECE (temperature cross-fitted) per input x model."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.preprocessing import StandardScaler

    from napari_reddino.label.reference_scores import _cross_fitted_ece

    rows = classes != None  # noqa: E711
    names = sorted(set(classes[rows]))
    codes = np.array([names.index(c) for c in classes[rows]])
    groups = table["image"].to_numpy()[rows]
    folds = grouped_folds(codes, groups, 5)
    out = []
    for mode in modes:
        x = reference_features(table, morphology_columns(table), mode,
                               counted=table["counted"].to_numpy(bool))[0][rows]
        for model in models:
            start, logits = time.perf_counter(), np.zeros((len(codes), len(names)))
            for train, test in folds:
                w = _weights(codes[train], np.zeros(len(train), bool), DEFAULT_PARAMS)
                if model == "logistic regression":
                    scaler = StandardScaler().fit(x[train])
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = LogisticRegression(max_iter=2000).fit(
                            np.nan_to_num(scaler.transform(x[train])), codes[train],
                            sample_weight=w)
                    logits[test] = fitted.decision_function(
                        np.nan_to_num(scaler.transform(x[test])))
                else:
                    logits[test] = _fit_logits(x[train], codes[train], len(names),
                                               DEFAULT_PARAMS, w)(x[test])
            predicted = logits.argmax(axis=1)
            row = (mode, model, accuracy_score(codes, predicted),
                   f1_score(codes, predicted, average="macro"),
                   expected_calibration_error(softmax(logits), codes),
                   _cross_fitted_ece(logits, codes, folds), time.perf_counter() - start)
            print(f"  {row[0]:15s} {row[1]:20s} accuracy {row[2]:.3f}  macro F1 {row[3]:.3f}  "
                  f"ECE {row[4]:.3f} -> {row[5]:.3f} calibrated  ({row[6]:.0f} s)", flush=True)
            out.append(row)
    return out


CAVEATS = """
## Caveats

- Development numbers, not claims: tuned and scored on the development split only; other blocks
  of the source and other labs are kept apart to judge the project.
- Elliptocyte's perfect score is not a claim: all its 330 labeled cells come from the 13 PNG
  smears, which hold no other class and are much brighter (median `morph_mean_r` 203 against
  113-153); without the absolute color columns the model still finds them (F1 0.972), but part
  of the 1.000 is the photograph, not the cell.
- Lengths and areas are in pixels of these photographs: smears at another magnification or
  camera shift the absolute size columns (the smear-relative ones do not); such cells are more
  often left unassigned as unlike the training cells.
"""


def deployment_check(model, table) -> str:
    """What ``annotate`` would do on every counted object of the 293 smears (labeled or not)."""
    from napari_reddino.label.reference import OUT_OF_DISTRIBUTION

    counted = table["counted"].to_numpy(bool)
    prediction = model.predict(table)[counted]
    far = (prediction["reason"] == OUT_OF_DISTRIBUTION).mean()
    return (f"on all {int(counted.sum())} counted objects of the smears: "
            f"{100 * prediction['assigned'].mean():.0f} % assigned, {100 * far:.1f} % unlike "
            "the training cells")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="first N smears only")
    parser.add_argument("--no-compare", dest="compare", action="store_false")
    parser.add_argument("--modes", default=",".join(FEATURE_MODES))
    parser.add_argument("--export", action="store_true",
                        help=f"write the bundled model to {WEIGHTS / 'reference-rbc12'}")
    args = parser.parse_args()
    table = load_tables(args.limit)
    classes = training_classes(table)
    print(f"{len(table)} objects in {table['image'].nunique()} smears; "
          f"{int((classes != None).sum())} training cells")  # noqa: E711
    if args.compare:
        print("inputs x model, grouped 5-fold CV by image:")
        compare(table, classes, args.modes.split(","),
                ("logistic regression", "boosted trees"))
    start = time.perf_counter()
    model = ReferenceModel.fit(table, classes, name="reference-rbc12", source=SOURCE)
    s = model.scores
    print(f"\nchosen: boosted trees on {DEFAULT_PARAMS['mode']} ({time.perf_counter() - start:.0f}"
          " s with its cross-validation)\n")
    print("| model | accuracy | macro F1 |\n|---|---|---|")
    for name, acc, f1 in BASELINES:
        print(f"| {name} | {acc:.3f} | {f1:.3f} |")
    print(f"| reference-rbc12, grouped 5-fold by image | {s['accuracy']:.3f} | "
          f"{s['macro_f1']:.3f} |\n")
    print("\n".join(per_class_lines(s)))
    print(f"\nECE {s['ece_uncalibrated']:.3f} uncalibrated -> {s['ece']:.3f} (temperature "
          f"{s['temperature']:.2f}); threshold {s['threshold']:.2f}: {100 * s['coverage']:.0f} % "
          f"assigned, accuracy {s['accuracy_assigned']:.3f} among them")
    for key, goal in TARGET.items():
        met = s[key] <= goal if key == "ece" else s[key] >= goal
        print(f"target {key} {'<=' if key == 'ece' else '>='} {goal}: "
              f"{s[key]:.3f} {'met' if met else 'NOT met'}")
    print(deployment_check(model, table))
    if args.export:
        folder = model.save(WEIGHTS / "reference-rbc12")
        with open(folder / "README.md", "a") as card:
            card.write(CAVEATS)
        size = sum(p.stat().st_size for p in folder.iterdir()) / 2 ** 20
        print(f"bundled model -> {folder} ({size:.1f} MiB)")


if __name__ == "__main__":
    main()
