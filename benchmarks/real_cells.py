"""What each feature space knows about real red-cell morphology (Chula RBC-12, 12 classes).

    python benchmarks/real_cells.py                          # bundled backbone, all 293 smears
    python benchmarks/real_cells.py --backbone reddino-small --limit 60 --seeds 3
    napari-reddino run ../shared/data/chula_rbc12_dev/images --out RUN   # end to end, then:
    python benchmarks/real_cells.py --from-run RUN      # scored from RUN/cells.h5ad + masks

Segment every smear (classical backend), match each labeled center to the object containing
it (the matched share is printed), then per feature space (backbone embedding, standardized
morphology, both, and a generic descriptor baseline: color histogram + HOG + 5 shape numbers):
5-fold stratified linear-probe and 20-NN weighted F1, and few-label propagation balanced
accuracy from 5 and 20 labels per class, picked at random or suggested (``suggest_cells`` medoids
within each class), over ``--seeds`` seeds. A second table gives the label-budget view: the same
number of cells picked with no class knowledge, at random or by ``suggest_cells`` on all cells.
Per-smear intermediate results are cached under /tmp/reddino_real_cells (see real_cells_data.py).
``--from-run`` reads what the CLI wrote instead (real_cells_run.py): the spaces are those the
CLI builds on all cells of the run, the matched rows taken afterwards.
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

from real_cells_data import DATA, load_cells
from sklearn.metrics import balanced_accuracy_score

from napari_reddino.explore.spaces import MORPHOLOGY_WEIGHT, combine, standardize
from napari_reddino.label.propagate import propagate
from napari_reddino.label.suggest import suggest_cells

DROP_CLASSES = ("uncategorized",)


def probe(x, y, seed=0):
    """5-fold stratified linear probe and 20-NN weighted F1 (RedDino's Table-1 protocol)."""
    from training.eval.probe import evaluate_split, make_splits

    folds = [evaluate_split(x, y, tr, te, seed=seed)
             for _, tr, te in make_splits("kfold", y, np.zeros(len(y)), n_folds=5, seed=seed)]
    out = {}
    for name in ("linear_probe", "knn20"):
        values = [100 * f[name]["weighted_f1"] for f in folds]
        out[name], out[name + "_std"] = np.mean(values), np.std(values)
    return out


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


def report_matches(cells, n_segmented) -> np.ndarray:
    """Print the matched share (overall, per class) and return the matched mask."""
    matched = cells["row"].to_numpy() >= 0
    print(f"{cells['image'].nunique()} smears, {len(cells)} labeled cells, {n_segmented} "
          "segmented objects")
    print(f"matched share: {100 * matched.mean():.1f} % of labeled centers inside a segmented "
          f"object ({cells.loc[matched].duplicated(['image', 'cell']).sum()} objects hold 2+ "
          "centers)")
    per_class = cells.assign(m=matched).groupby("class_name")["m"].mean().mul(100).round(1)
    print("matched per class: " + ", ".join(f"{k} {v}" for k, v in per_class.items()))
    return matched


def in_process_spaces(data, keep, weights):
    """The spaces of ``load_cells`` (standardized on the matched labeled cells only)."""
    morph_z = standardize(data["morph"][keep])
    emb = data["embedding"][keep]
    spaces = {"embedding": emb, "morphology": morph_z}
    for w in weights:
        spaces["both" if len(weights) == 1 else f"both w={w}"] = combine(
            morph_z, emb, morphology_weight=w)
    spaces["generic"] = standardize(data["generic"][keep])
    return spaces


def print_tables(spaces, y, args) -> None:
    """Probe, propagation and label-budget tables of every space."""
    print(f"{len(y)} matched cells in {len(np.unique(y))} classes; propagation method "
          f"{args.method}, {args.seeds} seeds\n")
    print("| space | dims | LP wF1 | 20-NN wF1 | prop 5 random | prop 5 suggested | "
          "prop 20 random | prop 20 suggested |")
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
        print(f"| {name} | {x.shape[1]} | {scores['linear_probe']:.1f} ± "
              f"{scores['linear_probe_std']:.1f} | {scores['knn20']:.1f} ± "
              f"{scores['knn20_std']:.1f} | " + " | ".join(cols) + " |", flush=True)
    if args.no_budget:
        return
    n5, n20 = 5 * len(np.unique(y)), 20 * len(np.unique(y))
    print(f"\nlabel budget without class knowledge (balanced accuracy, {args.method}):\n")
    print(f"| space | {n5} random | {n5} suggested | {n20} random | {n20} suggested |")
    print("|---|---|---|---|---|")
    print("\n".join(budget_rows))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from-run", metavar="RUN", default=None,
                        help="score the cells of a `napari-reddino run` output folder (its "
                             "cells.h5ad and masks) instead of segmenting here")
    parser.add_argument("--labels", default=str(DATA / "labels.csv"),
                        help="labeled centers (image, x, y, class_name) for --from-run")
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
    log = lambda m: print(m, file=sys.stderr)  # noqa: E731
    if args.from_run:
        from real_cells_run import load_run

        data = load_run(args.from_run, args.labels, morphology_weight=args.weights[0], log=log,
                        generic=not args.spaces or "generic" in args.spaces)
        cells = data["cells"]
        print(f"# real cells from run {args.from_run} ({data['backbone']}; the run's space: "
              f"{data['feature_space']})")
        matched = report_matches(cells, data["n_cells"])
        y_all = cells.loc[matched, "class_name"].to_numpy().astype(str)
        keep = ~np.isin(y_all, DROP_CLASSES)
        spaces = {k: v[keep] for k, v in data["spaces"].items()}
    else:
        data = load_cells(args.backbone, limit=args.limit, log=log)
        cells = data["cells"]
        print(f"# real cells: {args.backbone} (segmented here)")
        matched = report_matches(cells, cells.groupby("image")["n_segmented"].first().sum())
        y_all = cells.loc[matched, "class_name"].to_numpy().astype(str)
        keep = ~np.isin(y_all, DROP_CLASSES)
        spaces = in_process_spaces(data, keep, args.weights)
    y = y_all[keep]
    if args.spaces:
        spaces = {k: v for k, v in spaces.items() if k.split()[0] in args.spaces}
    print_tables(spaces, y, args)
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
