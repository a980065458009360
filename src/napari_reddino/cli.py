"""The ``napari-reddino`` command: the plugin's core steps from a terminal, one subcommand each.

``segment``, ``embed``, ``project``, ``propagate``, ``report`` and ``run`` call the same core
functions as the napari docks (so the GUI and the command line give the same result), with a
rich progress bar over each ``iter_*`` generator; ``demo`` is the README's main job. This file
holds the argument parser and error handling; the commands live in ``cli_run.py`` and
``cli_demo.py``. Heavy imports (torch, dask, napari) happen only inside a command, so
``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Generator
from typing import Any, TypeVar

from ._progress import Cancelled, Progress, run_to_completion

T = TypeVar("T")

BACKBONE_HELP = (
    "backbone: a registry name (reddino-tiny, reddino-small/base/large, dinov2-*, dinobloom-*), "
    "'hf-hub:owner/repo', 'local-dir:/folder' (timm export) or a timm model name "
    "(default: the bundled model, napari_reddino.backbones.DEFAULT_BACKBONE)"
)


def drive(gen: Generator[Progress, Any, T], description: str, *, quiet: bool = False) -> T:
    """Run a core progress generator under a rich progress bar (on stderr); return its result."""
    if quiet:
        return run_to_completion(gen)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn())
    with Bar(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(p: Progress) -> None:
            text = f"{description}: {p.message}" if p.message else description
            bar.update(task, completed=p.done, total=max(p.total, 1), description=text)

        return run_to_completion(gen, update)


def _add_pipeline_options(p: argparse.ArgumentParser, *, embed: bool = True) -> None:
    p.add_argument("--method", choices=("classical", "cellpose"), default="classical",
                   help="segmentation backend: fast classical RBC segmentation or cellpose "
                   "(needs the cpsam weights) (default: classical)")
    p.add_argument("--subjects", metavar="CSV",
                   help="CSV with columns image,subject mapping image file names to subjects "
                   "(default: each image's parent folder name)")
    if embed:
        p.add_argument("--backbone", default=None, help=BACKBONE_HELP)
        p.add_argument("--pooling", choices=("cls_crop", "patch_mean"), default="cls_crop",
                       help="per-cell vector: CLS token of a crop around the cell, or the mean "
                       "of the patch tokens under it (default: cls_crop)")
        p.add_argument("--device", default="auto",
                       help="torch device: auto, cpu, cuda, cuda:N or mps (default: auto)")


def _add_combine_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--projection", choices=("umap", "pca", "tsne"), default="umap",
                   help="2-D map of the cell embeddings (default: umap)")
    p.add_argument("--clusters", type=int, default=8, metavar="K",
                   help="number of k-means clusters of the embeddings (default: 8)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand (each with its own --help)."""
    parser = argparse.ArgumentParser(
        prog="napari-reddino",
        description="Explore red-blood-cell smears through a RedDino / DINOv2 foundation model. "
        "Each subcommand has its own --help.",
    )
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

    p = sub.add_parser("project", help="pool embedded smears: UMAP + clusters + batch metrics",
                       description="Pool the finished smears of a run folder into cells.parquet "
                       "+ embeddings.npz with umap_0/umap_1 and cluster columns, and compute "
                       "batch-effect metrics across subjects.")
    p.add_argument("run_dir", help="run folder written by `embed` or `run`")
    _add_combine_options(p)

    p = sub.add_parser("propagate", help="carry labeled classes from a reference to new smears",
                       description="k-NN label propagation: cells of a reference (a run folder "
                       "or a table with a 'class' column, plus its embeddings) vote the class "
                       "of every cell of RUN_DIR; adds class, class_source, confidence.")
    p.add_argument("run_dir", help="run folder whose pooled cells get classes")
    p.add_argument("--reference", required=True,
                   help="labeled reference: a run folder, or a .parquet/.csv cell table with "
                   "'class' and 'embedding_row' columns")
    p.add_argument("--reference-embeddings", metavar="NPZ",
                   help="embeddings of a reference table (default: embeddings.npz beside it)")
    p.add_argument("--k", type=int, default=15, help="neighbours that vote (default: 15)")
    p.add_argument("--spreading", action="store_true",
                   help="then spread labels over the k-NN graph of all cells")
    p.add_argument("--no-center", dest="center", action="store_false",
                   help="plain cosine around the origin instead of around the mean cell "
                   "(centring separates ViT embeddings better; the default)")

    p = sub.add_parser("report", help="HTML report of a run folder",
                       description="Write an HTML report (index.html + PNGs + CSV tables).")
    p.add_argument("run_dir", help="run folder with a pooled cells.parquet")
    p.add_argument("--out", help="report folder (default: RUN_DIR/report)")
    p.add_argument("--max-overlays", type=int, default=12,
                   help="PCA overlay figures for at most this many images (default: 12)")

    p = sub.add_parser("run", help="whole pipeline over many smears with dask, then a report",
                       description="Segment + embed every smear as one dask task (LocalCluster "
                       "or --scheduler), pool, project, cluster, batch metrics and HTML report. "
                       "Rerunning skips finished smears; failed smears go to failures.csv.")
    p.add_argument("inputs", nargs="+", metavar="IMAGES", help="image files, folders or globs")
    p.add_argument("--out", required=True, help="run folder")
    _add_pipeline_options(p)
    _add_combine_options(p)
    p.add_argument("--workers", type=int, default=None,
                   help="local dask worker processes (default: one per GPU, else per core)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="address of an existing dask scheduler (tcp://host:8786) instead")
    p.add_argument("--retries", type=int, default=1,
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
    p.add_argument("--workers", type=int, default=2, help="dask workers (default: 2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``napari-reddino`` and ``python -m napari_reddino``; returns the exit code."""
    args = build_parser().parse_args(argv)
    from . import cli_demo, cli_run

    commands = {
        "segment": cli_run.cmd_segment, "embed": cli_run.cmd_embed,
        "project": cli_run.cmd_project, "propagate": cli_run.cmd_propagate,
        "report": cli_run.cmd_report, "run": cli_run.cmd_run, "demo": cli_demo.cmd_demo,
    }
    try:
        return commands[args.command](args)
    except (KeyboardInterrupt, Cancelled):
        print("napari-reddino: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, ConnectionError) as exc:  # bad input, missing files/weights
        print(f"napari-reddino {args.command}: error: {exc}", file=sys.stderr)
        return 2
