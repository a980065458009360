"""``napari-reddino annotate RUN``: a reference model's classes for every counted cell of a run.

Why its own module: the command reads and writes the run the way ``propagate`` does (cells,
embeddings and AnnData written together, then ``differential.csv``) and may first refit and save
a model (``--update-model``), which the labeling dock and ``--model PATH`` then load.
"""

from __future__ import annotations

import argparse

from napari_reddino import names as nm
from napari_reddino.cli.commands import _counted_line, _load_combined, _say, _write_differential


def cmd_annotate(args: argparse.Namespace) -> int:
    from napari_reddino.label.annotate import annotate_table, annotation_summary, resolve_model
    from napari_reddino.label.reference import manual_classes
    from napari_reddino.runs.anndata_io import write_run_cells
    from napari_reddino.runs.run_files import read_summary

    table, _vectors, embeddings = _load_combined(args.run_dir)
    model = resolve_model(args.model)
    if args.update_model:
        if all(c is None for c in manual_classes(table)):
            raise ValueError(f"{args.run_dir}: no manual labels to update the model with "
                             "('class_source' manual); label some cells first")
        _say(f"refitting {model.name} on its {len(model.train_codes)} cells plus this run's "
             "manual labels, then cross-validating it (whole smears held out)")
        model = model.update(table, cross_validate=True)
        folder = model.save(args.update_model)
        s = model.scores
        _say(f"model saved -> {folder} (grouped CV: accuracy {s['accuracy']:.3f}, macro F1 "
             f"{s['macro_f1']:.3f}, ECE {s['ece']:.3f})")
    table = annotate_table(table, model, counted_only=args.counted_only,
                           vote_clusters=args.vote_clusters)
    write_run_cells(args.run_dir, table, embeddings,
                    projection=str(read_summary(args.run_dir).get("projection", "")))
    _say(f"{_counted_line(table, args.counted_only)}; {model.name}: "
         f"{annotation_summary(table)}")
    if table[nm.CLASS].notna().any():
        _write_differential(table, args.run_dir, args.counted_only)
    return 0
