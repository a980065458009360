"""The ``napari-reddino`` command: the plugin's core steps from a terminal, one subcommand each.

``segment``, ``embed``, ``project``, ``propagate``, ``report`` and ``run`` call the same core
functions as the napari docks (so the GUI and the command line give the same result), with a
rich progress bar over each ``iter_*`` generator; ``demo`` is the README's main job. This file
holds the argument parser and error handling; the commands live in ``commands.py`` and
``demo.py``. Every default and choice comes from :mod:`napari_reddino.defaults` and
:mod:`napari_reddino.names` (the docks and ``rd.tl`` read the same table). Heavy imports
(torch, dask, napari) happen only inside a command, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import os
import sys

from napari_reddino import __version__
from napari_reddino import names as nm
from napari_reddino.cli.console import drive  # noqa: F401  (re-exported: `from napari_reddino.cli.main import drive`)
from napari_reddino.defaults import DEFAULTS
from napari_reddino.progress import Cancelled

BACKBONE_HELP = (
    "backbone: a registry name (reddino-tiny, reddino-small/base/large, dinov2-*, dinobloom-*), "
    "'hf-hub:owner/repo', 'local-dir:/folder' (timm export) or a timm model name "
    f"(default: the bundled {DEFAULTS.backbone}, napari_reddino.defaults)"
)


def _count(minimum: int):
    """An argparse type: an integer >= ``minimum`` (argparse prints the message, exit code 2)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _on(flag: bool) -> str:
    return "on" if flag else "off"


def _add_pipeline_options(p: argparse.ArgumentParser, *, embed: bool = True) -> None:
    p.add_argument("--method", choices=nm.SEGMENT_METHODS, default=DEFAULTS.segment_method,
                   help="segmentation backend: fast classical RBC segmentation or cellpose "
                   "(needs the cpsam weights) (default: %(default)s)")
    p.add_argument("--subjects", metavar="CSV",
                   help="CSV with columns image,subject mapping image file names to subjects "
                   "(default: each image's parent folder name)")
    if embed:
        p.add_argument("--redo-corrected", action="store_true",
                       help="segment again smears whose cells were corrected by hand in "
                       "napari (default: they are kept as corrected)")
        p.add_argument("--backbone", default=None, help=BACKBONE_HELP)
        p.add_argument("--pooling", choices=nm.POOLINGS, default=DEFAULTS.pooling,
                       help="per-cell vector: CLS token of a crop around the cell, or the mean "
                       "of the patch tokens under it (default: %(default)s)")
        p.add_argument("--device", default=DEFAULTS.device,
                       help="torch device: auto, cpu, cuda, cuda:N or mps (default: %(default)s)")


FEATURES_HELP = ("space cells are compared in: the backbone 'embedding', the standardized "
                 "'morphology', or 'both' (default: %(default)s; the embedding for tables "
                 "without morphology columns)")


def _add_features_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--features", choices=nm.FEATURE_SPACES, default=DEFAULTS.space,
                   help=FEATURES_HELP)


def _add_counted_option(p: argparse.ArgumentParser) -> None:
    """``--all-objects``: count, map and classify every object, not only the counted cells."""
    p.add_argument("--all-objects", dest="counted_only", action="store_false",
                   default=DEFAULTS.counted_only,
                   help="use every segmented object; by default only counted cells (intact red "
                   "cells: not cut by the border, no white cells, platelets, debris, clumps or "
                   "objects excluded by hand) are counted, mapped and classified")


def _add_combine_options(p: argparse.ArgumentParser) -> None:
    _add_features_option(p)
    _add_counted_option(p)
    p.add_argument("--projection", choices=nm.MAP_METHODS, default=DEFAULTS.map_method,
                   help="2-D map of the cells (default: %(default)s)")
    p.add_argument("--clusters", type=_count(2), default=DEFAULTS.n_clusters, metavar="K",
                   help="number of k-means clusters of the cells (default: %(default)s)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each with its own --help)."""
    parser = argparse.ArgumentParser(
        prog="napari-reddino",
        description="Explore red-blood-cell smears through a RedDino / DINOv2 foundation model. "
        "Each subcommand has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("segment", help="segment cells: labels (.tif) + cell table per image",
                       description="Segment red blood cells; write IMAGE_labels.tif and "
                       "IMAGE_cells.csv per image into --out.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="output folder")
    _add_pipeline_options(p, embed=False)

    p = sub.add_parser("embed", help="segment + embed smears in this process (no dask)",
                       description="Segment and embed each smear in this process; writes the "
                       "per-smear folders of a run (grid.zarr, cells.parquet, embeddings.npz) "
                       "under --out/smears. Finished smears are skipped.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="run folder")
    _add_pipeline_options(p)

    p = sub.add_parser("project", help="combine embedded smears: UMAP + clusters + batch metrics",
                       description="Combine the finished smears of a run folder into cells.parquet "
                       "+ embeddings.npz with umap_0/umap_1 and cluster columns, and compute "
                       "batch-effect metrics across subjects.")
    p.add_argument("run_dir", help="run folder written by `embed` or `run`")
    _add_combine_options(p)

    p = sub.add_parser("propagate", help="carry labeled classes to every cell of a run",
                       description="Label propagation: the labeled cells (RUN_DIR's own manual "
                       "labels, or those of --reference: a run folder or a table with a 'class' "
                       "column, plus its embeddings) vote the class of every cell of RUN_DIR; "
                       "adds class, class_source, confidence. With the defaults it gives the "
                       "classes rd.tl.propagate and the labeling dock give.")
    p.add_argument("run_dir", help="run folder whose combined cells get classes")
    p.add_argument("--reference",
                   help="labeled reference: a run folder, or a .parquet/.csv cell table with "
                   "'class' and 'embedding_row' columns (default: RUN_DIR's own manual labels)")
    p.add_argument("--reference-embeddings", metavar="NPZ",
                   help="embeddings of a reference table (default: embeddings.npz beside it)")
    p.add_argument("--k", type=_count(1), default=DEFAULTS.propagation_k,
                   help="neighbors that vote (default: %(default)s)")
    p.add_argument("--spreading", action=argparse.BooleanOptionalAction,
                   default=DEFAULTS.spreading,
                   help="then spread labels over the k-NN graph of all cells "
                   f"(default: {_on(DEFAULTS.spreading)})")
    _add_features_option(p)
    p.add_argument("--classifier", choices=nm.PROPAGATION_METHODS,
                   default=DEFAULTS.propagation_method,
                   help="k-NN votes, a logistic regression fitted on the labeled cells, or "
                   "'auto': whichever cross-validates better on them (default: %(default)s)")
    p.add_argument("--center", action=argparse.BooleanOptionalAction, default=DEFAULTS.center,
                   help="cosine around the mean cell; --no-center: around the origin "
                   f"(centering separates ViT embeddings better; default: {_on(DEFAULTS.center)})")
    _add_counted_option(p)

    p = sub.add_parser("differential",
                       help="red-cell differential of a run: %%, 95 %% interval, ICSH grade",
                       description="Counts and percentages of the counted red cells per class, "
                       "per subject and per smear, with 95 % Wilson intervals and ICSH 2015 "
                       "grades; writes RUN_DIR/differential.csv (`propagate` writes it too).")
    p.add_argument("run_dir", help="run folder whose combined cells have classes")
    p.add_argument("--grades", metavar="CSV",
                   help="grading table (default: the ICSH 2015 table shipped with the plugin, "
                   "napari_reddino/label/icsh_grades.csv; copy and edit it for your lab)")
    _add_counted_option(p)

    p = sub.add_parser("train-cellpose", help="fine-tune Cellpose on smears corrected in napari",
                       description="Train cellpose (its own train_seg) on the smears of RUN "
                       "whose cells were corrected by hand and saved from napari; some are held "
                       "back and both models are scored on them (F1 at IoU 0.5). On a CPU this "
                       "takes long: the progress says how long.")
    p.add_argument("run_dir", metavar="RUN", help="run folder with smears corrected in napari")
    p.add_argument("--base-model", default=DEFAULTS.cellpose_model,
                   help="cellpose model to start from: a name or a weights file "
                   "(default: %(default)s)")
    p.add_argument("--epochs", type=_count(1), default=100, help="epochs (default: 100)")
    p.add_argument("--learning-rate", type=float, default=1e-5,
                   help="AdamW learning rate, cellpose's default (default: %(default)s)")
    p.add_argument("--device", default=DEFAULTS.device, help="auto, cpu or cuda")
    p.add_argument("--out", default=None, help="folder for the model (default: RUN/models)")

    p = sub.add_parser("annotate", help="classify every counted cell with a reference model",
                       description="Cells arrive classified: a reference model of red-cell "
                       "morphology gives every counted cell of RUN_DIR a class (class_source "
                       "'predicted', calibrated probability in 'confidence') or leaves it "
                       "unassigned (low probability, or unlike its training cells); manual "
                       "labels are kept. Writes the run's cells and differential.csv.")
    p.add_argument("run_dir", help="run folder with a combined cells.parquet (morph_* columns)")
    p.add_argument("--model", metavar="NAME|PATH", default=None,
                   help="a bundled model's name or a saved model folder (default: the bundled "
                   "reference-rbc12)")
    p.add_argument("--update-model", metavar="FOLDER",
                   help="first refit the model on its training cells plus RUN_DIR's manual "
                   "labels, cross-validate it, save it to FOLDER and annotate with it")
    p.add_argument("--vote-clusters", action="store_true",
                   help="predicted cells take their cluster's majority class")
    _add_counted_option(p)

    p = sub.add_parser("report", help="HTML report of a run folder",
                       description="Write an HTML report (index.html + PNGs + CSV tables).")
    p.add_argument("run_dir", help="run folder with a combined cells.parquet")
    p.add_argument("--out", help="report folder (default: RUN_DIR/report)")
    p.add_argument("--max-overlays", type=_count(0), default=DEFAULTS.max_overlays,
                   help="PCA overlay figures for at most this many images (default: %(default)s)")
    _add_counted_option(p)

    p = sub.add_parser("run", help="whole pipeline over many smears with dask, then a report",
                       description="Segment + embed every smear as one dask task (LocalCluster "
                       "or --scheduler), combine, project, cluster, batch metrics and HTML report. "
                       "Rerunning skips finished smears; failed smears go to failures.csv.")
    p.add_argument("inputs", nargs="+", metavar="IMAGES", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="run folder")
    _add_pipeline_options(p)
    _add_combine_options(p)
    p.add_argument("--workers", type=_count(1), default=None,
                   help="local dask worker processes (default: one per GPU, else per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of an existing dask scheduler (tcp://host:8786) instead")
    p.add_argument("--retries", type=_count(0), default=1,
                   help="retries of a smear task that raised (default: 1)")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")

    p = sub.add_parser("demo", help="the main job: napari with the plugin on a sample smear",
                       description="With a display: open napari with a sample smear, the "
                       "plugin's docks and segmentation + embedding already run. With --headless "
                       "or no display: run the whole pipeline on synthetic smears and write "
                       "the HTML report.")
    p.add_argument("--headless", action="store_true", help="no window, even with a display")
    p.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    p.add_argument("--backbone", default=None, help=BACKBONE_HELP)
    p.add_argument("--workers", type=_count(1), default=2, help="dask workers (default: 2)")
    _accept_global_options(sub)
    return parser


def _accept_global_options(sub) -> None:
    """Let ``-q`` follow the subcommand too (``napari-reddino run ... -q``), as users type it.

    SUPPRESS keeps a subcommand that was not given ``-q`` from resetting the top-level value.
    """
    for subparser in sub.choices.values():
        subparser.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                               help="no progress bars")


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``napari-reddino`` and ``python -m napari_reddino``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from napari_reddino.cli import annotate, commands, demo, train_cellpose

    handlers = {
        "segment": commands.cmd_segment, "embed": commands.cmd_embed,
        "project": commands.cmd_project, "propagate": commands.cmd_propagate,
        "report": commands.cmd_report, "run": commands.cmd_run, "demo": demo.cmd_demo,
        "differential": commands.cmd_differential, "annotate": annotate.cmd_annotate,
        "train-cellpose": train_cellpose.cmd_train_cellpose,
    }
    try:
        return handlers[args.command](args)
    except (KeyboardInterrupt, Cancelled):
        print("napari-reddino: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ConnectionError) as exc:  # bad input, missing files/weights
        print(f"napari-reddino {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # a bug: say so in one line, the traceback only on request
        if os.environ.get("NAPARI_REDDINO_DEBUG"):
            raise
        print(f"napari-reddino {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(set NAPARI_REDDINO_DEBUG=1 for the traceback and report it)", file=sys.stderr)
        return 3
