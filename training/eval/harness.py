"""Evaluate a backbone on labeled cell crops, RedDino Table-1 style, reproducibly.

    python -m training.eval --backbone NAME_OR_DIR --data FOLDER_OR_TABLE \\
        [--protocol loso|kfold|both] [--out results.json]
    python -m training.eval --check results.json        # recompute, compare, exit 1 on a change
    python -m training.eval make-synthetic --out DIR    # a labeled set from synthetic smears
    python -m training.eval make-bccd --bccd BCCD --out DIR   # real RBC/WBC/platelet crops
    python -m training.eval make-chula --chula CHULA_DEV --out DIR  # labeled real RBC crops
    python -m training.eval --backbone generic-descriptor ...  # the hand-made baseline

Frozen CLS features from any ``napari_reddino.embed.backbones`` backbone, then a linear probe and
1-NN / 20-NN classifiers (:mod:`training.eval.probe`) under leave-one-source-out (generalizing
to an unseen subject/site) and stratified k-fold. Everything is seeded, so a saved JSON can be
re-checked bit for bit on the same machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from training.eval.datasets import (
    LabeledCells,
    cell_image_shape,
    load_labeled_cells,
    make_synthetic_cell_folder,
    read_cell_image,
)
from training.eval.probe import (
    PROTOCOLS,
    evaluate_split,
    format_table,
    make_splits,
    summarize,
    unit_rows,
)

RESULTS_FORMAT = "napari-reddino-eval/1"
CHECK_TOLERANCE = 1e-9
GENERIC_DESCRIPTOR = "generic-descriptor"


def _same_shape_batches(shapes: list[tuple[int, ...]], batch_size: int) -> list[list[int]]:
    """Index batches whose crops share one shape (the backbone resizes a whole batch at once)."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, shape in enumerate(shapes):
        by_shape.setdefault(shape, []).append(index)
    batches = []
    for shape in sorted(by_shape):
        rows = by_shape[shape]
        batches += [rows[i : i + batch_size] for i in range(0, len(rows), batch_size)]
    return batches


def iter_cls_features(
    cells: LabeledCells, backbone, *, batch_size: int = 32, cancel: threading.Event | None = None
) -> ProgressGen[np.ndarray]:
    """Frozen CLS (pooled) features (N, D) float32 of every crop, in ``cells`` order."""
    shapes = [cell_image_shape(path) for path in cells.paths]  # headers only: crops stream
    batches = _same_shape_batches(shapes, batch_size)
    features = None
    for done, rows in enumerate(batches):
        check_cancel(cancel)
        cls, _ = backbone.forward(np.stack([read_cell_image(cells.paths[i]) for i in rows]))
        if features is None:
            features = np.zeros((len(cells), cls.shape[1]), dtype=np.float32)
        features[rows] = cls
        yield Progress(done + 1, len(batches), f"features: batch {done + 1}/{len(batches)}")
    return features


def iter_evaluate(
    backbone: str,
    data: str | Path,
    *,
    protocols: Sequence[str] = ("loso",),
    n_folds: int = 5,
    seed: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    cancel: threading.Event | None = None,
) -> ProgressGen[dict]:
    """Features, then every split of every protocol; returns the JSON-ready results dict."""
    from napari_reddino.embed.backbones import load_backbone

    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise ValueError(f"unknown protocol(s) {sorted(unknown)}: use {list(PROTOCOLS)}")
    cells = load_labeled_cells(data)
    if len(cells.classes) < 2:
        raise ValueError(f"{data} holds a single class {cells.classes}; a probe needs at least 2")
    splits = {
        p: make_splits(p, cells.labels, cells.sources, n_folds=n_folds, seed=seed)
        for p in protocols
    }
    torch.manual_seed(seed)
    if backbone == GENERIC_DESCRIPTOR:  # the hand-made baseline, through the same probes
        from training.eval.chula import DescriptorModel

        model = DescriptorModel()
    else:
        model = load_backbone(backbone, device=device, dtype="float32")
    features = yield from iter_cls_features(cells, model, batch_size=batch_size, cancel=cancel)
    if not np.isfinite(features).all():
        raise ValueError(f"backbone {backbone!r} produced non-finite features")
    results = {
        "format": RESULTS_FORMAT,
        "config": {
            "backbone": str(backbone),
            "data": str(data),
            "protocols": list(protocols),
            "n_folds": n_folds,
            "seed": seed,
            "batch_size": batch_size,
            "device": device,
        },
        "backbone": {
            "name": model.name,
            "embed_dim": int(features.shape[1]),
            "img_size": model.img_size,
            "patch_size": model.patch_size,
        },
        "dataset": cells.summary(),
        "features": {
            "shape": list(features.shape),
            "mean": float(features.mean()),
            "std": float(features.std()),
        },
        "protocols": {},
    }
    n_total = sum(len(s) for s in splits.values())
    done, unit = 0, unit_rows(features)
    for protocol, protocol_splits in splits.items():
        folds = []
        for name, train, test in protocol_splits:
            check_cancel(cancel)
            folds.append(
                {
                    "name": name,
                    "n_train": len(train),
                    "n_test": len(test),
                    "results": evaluate_split(features, cells.labels, train, test, seed=seed,
                                              unit=unit),
                }
            )
            done += 1
            yield Progress(done, n_total, f"{protocol} {name}")
        results["protocols"][protocol] = {"folds": folds, "summary": summarize(folds)}
    return results


def evaluate(backbone: str, data: str | Path, **kw) -> dict:
    """Synchronous :func:`iter_evaluate`."""
    return run_to_completion(iter_evaluate(backbone, data, **kw))


def format_results(results: dict) -> str:
    """One Table-1-style block per protocol, headed by what was evaluated."""
    dataset = results["dataset"]
    blocks = []
    for protocol, outcome in results["protocols"].items():
        title = (
            f"{results['config']['backbone']} | {dataset['n_cells']} cells, "
            f"{len(dataset['classes'])} classes, {len(dataset['sources'])} sources | "
            f"{protocol} ({len(outcome['folds'])} folds)"
        )
        blocks.append(format_table(outcome["summary"], title=title))
    return "\n\n".join(blocks)


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    """Flatten the numeric leaves of a results tree to ``path -> value``."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, list):
        items = (
            (str(v.get("name", i)) if isinstance(v, dict) else str(i), v)
            for i, v in enumerate(tree)
        )
    else:
        return {prefix: float(tree)} if isinstance(tree, (int, float)) else {}
    flat: dict[str, float] = {}
    for key, value in items:
        flat.update(_numbers(value, f"{prefix}/{key}" if prefix else str(key)))
    return flat


def compare_results(saved: dict, recomputed: dict, tol: float = CHECK_TOLERANCE) -> list[str]:
    """Every number that differs between two runs (dataset counts, features, fold metrics)."""
    keys = ("dataset", "features", "protocols")
    old = _numbers({k: saved.get(k, {}) for k in keys})
    new = _numbers({k: recomputed.get(k, {}) for k in keys})
    differences = [f"{k}: only in the saved run" for k in sorted(old.keys() - new.keys())]
    differences += [f"{k}: only in the new run" for k in sorted(new.keys() - old.keys())]
    for key in sorted(old.keys() & new.keys()):
        if not abs(old[key] - new[key]) <= tol * max(1.0, abs(old[key])):
            differences.append(f"{key}: saved {old[key]!r}, now {new[key]!r}")
    if saved.get("dataset", {}).get("classes") != recomputed["dataset"]["classes"]:
        differences.append("dataset/classes: the class names differ")
    return differences


def check_saved_run(path: str | Path, **overrides) -> tuple[dict, list[str]]:
    """Recompute a saved run with its own settings (``overrides`` e.g. a moved data folder)."""
    try:
        saved = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read saved results {path}: {exc}") from exc
    if saved.get("format") != RESULTS_FORMAT:
        raise ValueError(f"{path} is not a {RESULTS_FORMAT} results file")
    config = {**saved["config"], **{k: v for k, v in overrides.items() if v is not None}}
    backbone, data = config.pop("backbone"), config.pop("data")
    recomputed = evaluate(backbone, data, **config)
    return recomputed, compare_results(saved, recomputed)


def _run_with_bar(gen: ProgressGen[dict]) -> dict:
    from rich.progress import Progress as Bar

    with Bar(transient=True, console=_stderr_console()) as bar:
        task = bar.add_task("evaluating", total=None)
        return run_to_completion(
            gen, lambda p: bar.update(task, completed=p.done, total=p.total, description=p.message)
        )


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)


def _eval_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.eval",
        description="Linear probe and k-NN evaluation of a backbone on labeled cell crops "
        "(also: `python -m training.eval make-synthetic|make-bccd --out DIR` and "
        "`python -m training.eval make-chula --chula CHULA_DEV --out DIR`).",
    )
    parser.add_argument("--backbone", help="registry name, hf-hub:..., local-dir:... or folder")
    parser.add_argument("--data", help="<source>/<class>/*.png folder or path,label,source table")
    parser.add_argument(
        "--protocol",
        choices=[*PROTOCOLS, "both"],
        default=None,
        help="leave-one-source-out (default), stratified k-fold, or both",
    )
    parser.add_argument("--folds", type=int, default=None, help="k for k-fold (default 5)")
    parser.add_argument("--seed", type=int, default=None, help="seed of splits and probes")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument(
        "--device", default=None, help="auto (default: GPU if any), cuda, mps or cpu"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument(
        "--check",
        metavar="RESULTS_JSON",
        help="recompute a saved run and exit 1 if any number changed",
    )
    return parser


def _synthetic_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.eval make-synthetic",
        description="Write a <subject>/<class>/*.png cell-crop folder from synthetic smears.",
    )
    parser.add_argument("--out", required=True, help="new (or empty) folder to write")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--images-per-subject", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="smear side in pixels")
    parser.add_argument("--crop", type=int, default=64, help="crop side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--batch-strength",
        type=float,
        default=1.0,
        help="how much subjects differ in stain/illumination",
    )
    parser.add_argument(
        "--natural-frequencies",
        action="store_true",
        help="keep the smear's class frequencies (default: balanced classes)",
    )
    parser.add_argument("--distractors", action="store_true", help="also crop WBCs and platelets")
    return parser


def _make_synthetic(argv: list[str]) -> int:
    args = _synthetic_parser().parse_args(argv)
    table = make_synthetic_cell_folder(
        args.out,
        n_subjects=args.subjects,
        images_per_subject=args.images_per_subject,
        shape=(args.size, args.size),
        crop=args.crop,
        seed=args.seed,
        balanced=not args.natural_frequencies,
        include_distractors=args.distractors,
        batch_strength=args.batch_strength,
    )
    counts = table.groupby(["source", "label"]).size().unstack(fill_value=0)
    print(f"wrote {len(table)} crops to {args.out}\n{counts.to_string()}")
    return 0


def _make_bccd(argv: list[str]) -> int:
    from training.eval.bccd import make_bccd_cell_folder

    parser = argparse.ArgumentParser(
        prog="python -m training.eval make-bccd",
        description="Write a <split>/<class>/*.png folder of real BCCD cell crops.",
    )
    parser.add_argument("--bccd", required=True, help="BCCD folder (Annotations/, JPEGImages/)")
    parser.add_argument("--out", required=True, help="new (or empty) folder to write")
    parser.add_argument("--crop", type=int, default=64, help="crop side in pixels")
    parser.add_argument("--max-per-class", type=int, default=300, help="0: keep every box")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    table = make_bccd_cell_folder(
        args.bccd,
        args.out,
        crop=args.crop,
        max_per_class=args.max_per_class or None,
        seed=args.seed,
    )
    counts = table.groupby(["source", "label"]).size().unstack(fill_value=0)
    print(f"wrote {len(table)} crops to {args.out}\n{counts.to_string()}")
    return 0


def _evaluate_cli(argv: list[str]) -> int:
    parser = _eval_parser()
    args = parser.parse_args(argv)
    protocols = None
    if args.protocol is not None:
        protocols = list(PROTOCOLS) if args.protocol == "both" else [args.protocol]
    options = {
        "protocols": protocols,
        "n_folds": args.folds,
        "seed": args.seed,
        "batch_size": args.batch_size,
        "device": args.device,
    }
    if args.check:
        overrides = {**options, "backbone": args.backbone, "data": args.data}
        results, differences = check_saved_run(args.check, **overrides)
        print(format_results(results))
        if differences:
            print(f"\nMISMATCH with {args.check}:\n  " + "\n  ".join(differences))
            return 1
        print(f"\nreproduced {args.check}: every number matches")
        return 0
    if not args.backbone or not args.data:
        parser.error("--backbone and --data are required (or --check RESULTS_JSON)")
    options = {k: v for k, v in options.items() if v is not None}
    results = _run_with_bar(iter_evaluate(args.backbone, args.data, **options))
    print(format_results(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"\nresults written to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; bad input prints one clear line and returns 2."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "make-synthetic":
            return _make_synthetic(argv[1:])
        if argv and argv[0] == "make-bccd":
            return _make_bccd(argv[1:])
        if argv and argv[0] == "make-chula":
            from training.eval.chula import make_chula_cli

            return make_chula_cli(argv[1:])
        return _evaluate_cli(argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

