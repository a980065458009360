"""What each feature space knows about real red-cell morphology (Chula RBC-12, 12 classes).

    python benchmarks/real_cells.py                          # bundled backbone, all 293 smears
    python benchmarks/real_cells.py --backbone reddino-small --limit 60 --seeds 3

Segment every smear (classical backend), match each labelled centre to the object containing
it (the matched share is printed), then per feature space (backbone embedding, standardised
morphology, both, and a generic descriptor baseline: colour histogram + HOG + 5 shape numbers):
5-fold stratified linear-probe and 20-NN weighted F1, and few-label propagation balanced
accuracy from 5 and 20 labels per class, picked at random or suggested (``suggest_cells`` medoids
within each class), over ``--seeds`` seeds. A second table gives the label-budget view: the same
number of cells picked with no class knowledge, at random or by ``suggest_cells`` on all cells.
Per-smear intermediate results are cached under /tmp/reddino_real_cells (see real_cells_data.py).
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

from real_cells_data import load_cells
from sklearn.metrics import balanced_accuracy_score

from napari_reddino.feature_spaces import MORPHOLOGY_WEIGHT, combine, standardise
from napari_reddino.propagate import propagate
from napari_reddino.suggest import suggest_cells

DROP_CLASSES = ("uncategorised",)


def probe(x, y, seed=0):
    """5-fold stratified linear probe and 20-NN weighted F1 (RedDino's Table-1 protocol)."""
    from training.eval_probe import evaluate_split, make_splits

    folds = [evaluate_split(x, y, tr, te, seed=seed)
             for _, tr, te in make_splits("kfold", y, np.zeros(len(y)), n_folds=5, seed=seed)]
    return {name: 100 * np.mean([f[name]["weighted_f1"] for f in folds])
            for name in ("linear_probe", "knn20")}


def picks_per_class(x, y, per_class, strategy, seed):
    rng = np.random.default_rng(seed)
    picks = []
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        take = min(per_class, len(rows) - 1)
        if take < 1:
            continue
        if strategy == "random":
            picks.extend(rng.choice(rows, take, replace=False))
        else:
            picks.extend(rows[suggest_cells(x[rows], take, random_state=seed)])
    return np.asarray(picks)


def picks_budget(x, y, n, strategy, seed):
    if strategy == "random":
        return np.random.default_rng(seed).choice(len(y), n, replace=False)
    return suggest_cells(x, n, random_state=seed)


def propagation_bacc(x, y, picks, method):
    classes = np.full(len(y), None, dtype=object)
    classes[picks] = y[picks]
    result = propagate(x, classes, k=15, center=True, method=method)
    rest = np.setdiff1d(np.arange(len(y)), picks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return 100 * balanced_accuracy_score(y[rest], result.classes[rest].astype(str))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="reddino-tiny")
    parser.add_argument("--limit", type=int, default=None, help="first N smears only")
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--method", default="auto", help="propagation: auto | knn | logreg")
    parser.add_argument("--weights", type=float, nargs="+", default=[MORPHOLOGY_WEIGHT],
                        help="morphology weight(s) of the 'both' space to compare")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spaces", nargs="+", default=None,
                        help="only these spaces (embedding, morphology, both, generic)")
    parser.add_argument("--no-budget", action="store_true", help="skip the label-budget table")
    parser.add_argument("--fresh", action="store_true",
                        help="re-segment smears cached by older segmentation code")
    args = parser.parse_args(argv)
    import real_cells_data

    real_cells_data.FRESH = args.fresh
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    data = load_cells(args.backbone, limit=args.limit, log=lambda m: print(m, file=sys.stderr))
    cells = data["cells"]
    n_smears = cells["image"].nunique()
    matched = cells["row"].to_numpy() >= 0
    print(f"# real cells: {args.backbone}, {n_smears} smears, {len(cells)} labelled cells, "
          f"{cells.groupby('image')['n_segmented'].first().sum()} segmented objects")
    print(f"matched share: {100 * matched.mean():.1f} % of labelled centres inside a segmented "
          f"object ({cells.loc[matched].duplicated(['image', 'cell']).sum()} objects hold 2+ "
          "centres)")
    per_class = cells.assign(m=matched).groupby("class_name")["m"].mean().mul(100).round(1)
    print("matched per class: " + ", ".join(f"{k} {v}" for k, v in per_class.items()))
    y_all = cells.loc[matched, "class_name"].to_numpy().astype(str)
    keep = ~np.isin(y_all, DROP_CLASSES)
    y = y_all[keep]
    morph_z = standardise(data["morph"][keep])
    emb = data["embedding"][keep]
    spaces = {"embedding": emb, "morphology": morph_z}
    for w in args.weights:
        spaces["both" if len(args.weights) == 1 else f"both w={w}"] = combine(
            morph_z, emb, morphology_weight=w)
    spaces["generic"] = standardise(data["generic"][keep])
    if args.spaces:
        spaces = {k: v for k, v in spaces.items() if k.split()[0] in args.spaces}
    print(f"{len(y)} matched cells in {len(np.unique(y))} classes; propagation method "
          f"{args.method}, {args.seeds} seeds\n")
    header = ("| space | dims | LP wF1 | 20-NN wF1 | prop 5 random | prop 5 suggested | "
              "prop 20 random | prop 20 suggested |")
    print(header)
    print("|---|---|---|---|---|---|---|---|")
    budget_rows = []
    for name, x in spaces.items():
        scores = probe(x, y)
        cols = []
        for per_class in (5, 20):
            for strategy in ("random", "suggested"):
                values = [propagation_bacc(x, y, picks_per_class(x, y, per_class, strategy, s),
                                           args.method) for s in range(args.seeds)]
                cols.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}")
        budget = []
        for n in () if args.no_budget else (5 * len(np.unique(y)), 20 * len(np.unique(y))):
            for strategy in ("random", "suggested"):
                values = [propagation_bacc(x, y, picks_budget(x, y, n, strategy, s), args.method)
                          for s in range(args.seeds)]
                budget.append(f"{np.mean(values):.1f} ± {np.std(values):.1f}")
        budget_rows.append(f"| {name} | " + " | ".join(budget) + " |")
        print(f"| {name} | {x.shape[1]} | {scores['linear_probe']:.1f} | {scores['knn20']:.1f} | "
              + " | ".join(cols) + " |", flush=True)
    n5, n20 = 5 * len(np.unique(y)), 20 * len(np.unique(y))
    if args.no_budget:
        return
    print(f"\nlabel budget without class knowledge (balanced accuracy, {args.method}):\n")
    print(f"| space | {n5} random | {n5} suggested | {n20} random | {n20} suggested |")
    print("|---|---|---|---|---|")
    print("\n".join(budget_rows))
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
