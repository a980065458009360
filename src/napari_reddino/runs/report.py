"""HTML report of a batch run: cell counts per subject and image, PCA overlays, UMAP, batch metrics.

A folder a person opens in any browser: ``index.html`` (plain HTML + CSS, images linked
relatively), the PNGs under ``images/`` and every table as CSV next to it, so the numbers can
be taken to a spreadsheet. Reads what :mod:`napari_reddino.runs.combine` wrote; no Qt.
Figures are drawn on matplotlib ``Figure`` objects with the Agg canvas (importing this module
never switches matplotlib's backend of a notebook or a viewer); the page is a Jinja2 template
with autoescape, so image or subject names can never inject markup.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.io.atomic import write_csv, write_text
from napari_reddino.label.counting import counted_rows
from napari_reddino.progress import Progress, ProgressGen, check_cancel, run_to_completion
from napari_reddino.runs.combine import METRICS_TABLE, finished_smears, read_summary
from napari_reddino.runs.distributed import FAILURES_TABLE, RUNS_TABLE
from napari_reddino.runs.pipeline import (
    PipelineInputError,
    check_grid,
    load_smear_outputs,
    read_image,
)

CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { margin-bottom: .2em; } h2 { border-bottom: 2px solid #c0392b; padding-bottom: .2em; }
.meta { color: #666; margin-top: 0; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { background: #f7f2f2; border-radius: 6px; padding: .6em 1.2em; }
.card b { display: block; font-size: 1.6em; color: #c0392b; }
table.data { border-collapse: collapse; margin: .5em 0 1em; font-size: .9em; }
table.data th, table.data td { padding: .3em .7em; text-align: right;
                               border-bottom: 1px solid #ddd; }
table.data th:first-child, table.data td:first-child { text-align: left; }
table.data th { background: #f0e6e6; } table.data tr:hover td { background: #fbf7f7; }
.figs { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr)); gap: 1em; }
figure { margin: 0; } figure img { width: 100%; border: 1px solid #ddd; }
figcaption { font-size: .85em; color: #555; }
.fail { color: #c0392b; }
"""


def class_column(table: pd.DataFrame) -> str:
    """Count by ``class`` where cells have classes, else by ``cluster``."""
    if nm.CLASS in table.columns and table[nm.CLASS].notna().any() and (
            table[nm.CLASS] != "").any():
        return nm.CLASS
    if nm.CLUSTER in table.columns:
        return nm.CLUSTER
    raise ValueError("cell table has neither a 'class' nor a 'cluster' column to count by")


def count_table(table: pd.DataFrame, by: str, column: str) -> pd.DataFrame:
    """Cells per ``by`` (subject or image) and ``column`` value, with a total column."""
    unlabeled = {"nan": "unlabeled", "None": "unlabeled", "<NA>": "unlabeled", "": "unlabeled"}
    values = table[column].astype(str).replace(unlabeled)
    counts = pd.crosstab(table[by].astype(str), values)
    counts.columns = [f"{column} {c}" if column == nm.CLUSTER else str(c) for c in counts.columns]
    counts["total"] = counts.sum(axis=1)
    counts.index.name = by
    return counts.reset_index()


#: Morphology shown per class / cluster: the numbers a hematologist reads first.
REPORT_MORPHOLOGY = ("equivalent_diameter", "elongation", "circularity", "pallor_rim_ratio",
                     "target_score", "spicule_count", "od_mean")


def morphology_table(table: pd.DataFrame, by: str) -> pd.DataFrame:
    """Median of a few named morphology features per ``by`` group (empty without them)."""
    from napari_reddino.morphology.features import BY_NAME

    columns = [BY_NAME[n].column for n in REPORT_MORPHOLOGY if BY_NAME[n].column in table]
    if not columns or by not in table.columns:
        return pd.DataFrame()
    medians = table.groupby(by, observed=True)[columns].median()
    medians.columns = [c.removeprefix("morph_") for c in columns]
    medians.insert(0, "cells", table.groupby(by, observed=True).size())
    return medians.reset_index()


def _figure(width: float, height: float, dpi: int = 100) -> Figure:
    """A figure on the Agg canvas: files only, whatever backend pyplot uses elsewhere."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def plot_umap(table: pd.DataFrame, color_by: str, path: Path, title: str,
              method: str = "UMAP") -> Path:
    """Scatter of the table's 2-D map colored by a categorical column, legend outside."""
    _method, columns = nm.find_map(table.columns)
    if not columns:
        raise ValueError("the cell table has no 2-D map columns (umap_0/1, pca_0/1 or tsne_0/1)")
    fig = _figure(6.4, 5.2)
    ax = fig.subplots()
    groups = table[color_by].astype(str)
    cmap = colormaps["tab20" if groups.nunique() > 10 else "tab10"]
    for i, (value, rows) in enumerate(table.groupby(groups, sort=True)):
        ax.scatter(rows[columns[0]], rows[columns[1]], s=8, alpha=0.8, color=cmap(i % cmap.N),
                   label=f"{value} ({len(rows)})", linewidths=0)
    ax.set(xlabel=f"{method} 1", ylabel=f"{method} 2", title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5),
              frameon=False, title=color_by, title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path


def plot_overlay(folder: Path, path: Path, max_side: int = 640) -> Path:
    """Smear with cell outlines beside its PCA-3 patch-embedding overlay."""
    from skimage.segmentation import find_boundaries

    from napari_reddino.embed.grid import grid_mask, pca_rgb

    _table, _emb, grid, labels, marker = load_smear_outputs(folder)
    try:
        image = read_image(marker.get("source", ""))
    except PipelineInputError:  # source moved: show the overlay on a gray background
        image = np.full((*labels.shape, 3), 200, np.uint8)
    patch = int(marker.get("patch_size") or np.ceil(image.shape[0] / grid.shape[0]))
    cells = grid_mask(labels > 0, patch)  # fit the PCA on cell tokens, not on background
    rgb = np.asarray(pca_rgb(grid, cells if cells.sum() >= 3 else None), dtype=np.float32)
    height, width = image.shape[:2]
    big = np.repeat(np.repeat(rgb, patch, axis=0), patch, axis=1)[:height, :width]
    on_cells = np.repeat(np.repeat(cells, patch, axis=0), patch, axis=1)[:height, :width]
    photo = image.astype(np.float32) / 255
    blend = photo.copy()  # background stays the photo; cell patches get their PCA color
    blend[on_cells] = 0.35 * photo[on_cells] + 0.65 * big[on_cells]
    outlined = image.copy()
    outlined[find_boundaries(labels, mode="inner")] = (0, 0, 0)
    scale = max(image.shape[:2]) / max_side
    fig = _figure(2 * image.shape[1] / scale / 100 + 0.4, image.shape[0] / scale / 100 + 0.5)
    axes = fig.subplots(1, 2)
    for ax, shown, title in zip(axes, (outlined, blend), ("cells", "PCA-3 of patch tokens")):
        ax.imshow(shown, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)
    return path


def _html_table(df: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    if df.empty:
        return "<p><i>none</i></p>"
    return df.to_html(index=False, border=0, classes="data", escape=True,
                      float_format=lambda v: float_format.format(v), na_rep="")


def iter_write_report(
    run_dir: str | os.PathLike,
    report_dir: str | os.PathLike | None = None,
    *,
    max_overlays: int = DEFAULTS.max_overlays,
    cancel: threading.Event | None = None,
    counted_only: bool = DEFAULTS.counted_only,
) -> ProgressGen[Path]:
    """Write the report folder for a combined run; return the path of its ``index.html``.

    Counts, morphology and maps are of the counted cells (every object with
    ``counted_only=False``); the differential has a section of its own.
    """
    run_dir = Path(run_dir)
    pooled = run_dir / nm.CELLS_TABLE_FILE
    if not pooled.is_file():
        raise FileNotFoundError(
            f"{run_dir}: no {nm.CELLS_TABLE_FILE}; run `napari-reddino run` (or `napari-reddino "
            "project`) there first"
        )
    from napari_reddino.io.cell_table import load_table

    report_dir = Path(report_dir) if report_dir else run_dir / "report"
    images_dir = report_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    table = load_table(pooled)
    folders = finished_smears(run_dir, sorted(table[nm.IMAGE].astype(str).unique()))
    differential = differential_section(table, report_dir, counted_only)
    table = table[counted_rows(table, counted_only)]
    n_overlays = min(max_overlays, len(folders))
    total = 2 + n_overlays
    column = class_column(table)
    by_subject = count_table(table, nm.SUBJECT, column)
    by_image = count_table(table, nm.IMAGE, column)
    morphology = morphology_table(table, column)
    metrics = _read_csv(run_dir / METRICS_TABLE)
    failures = _read_csv(run_dir / FAILURES_TABLE)
    summary = read_summary(run_dir)
    for name, df in (("counts_by_subject", by_subject), ("counts_by_image", by_image),
                     ("batch_metrics", metrics), ("failures", failures),
                     (f"morphology_by_{column}", morphology)):
        write_csv(df, report_dir / f"{name}.csv", f"report table {name}")
    method = _METHOD_TITLES.get(str(summary.get("projection", "umap")), "map")
    yield Progress(0, total, f"{method} plots")
    figures = [
        plot_umap(table, column, images_dir / f"umap_{column}.png", f"Cells by {column}", method),
        plot_umap(table, nm.SUBJECT, images_dir / "umap_subject.png", "Cells by subject", method),
    ]
    yield Progress(1, total, "PCA overlays")
    overlays, damaged = [], []
    for i, folder in enumerate(folders[:n_overlays]):
        check_cancel(cancel)
        problem = check_grid(folder)
        if problem is not None:  # e.g. grid.zarr/grid deleted: say which smear and what to do
            damaged.append(f"smear folder {folder.name}: {problem}; its overlay is left out; "
                           "rerun `napari-reddino embed` (or `run`) on its image to redo it")
            warnings.warn(damaged[-1], stacklevel=2)
            continue
        # the folder name is already safe and unique (x.y.png and x_y.png stay apart)
        png = plot_overlay(folder, images_dir / f"pca_{folder.name}.png")
        overlays.append((folder.name, png))
        yield Progress(2 + i, total, f"overlay {folder.name}")
    runs = _read_csv(run_dir / RUNS_TABLE)
    flagged = runs[runs["warning"].fillna("").astype(str) != ""] if "warning" in runs else runs[:0]
    notes = [*map(str, summary.get("warnings", [])), *damaged,
             *(f"{r.image}: {r.warning}" for r in flagged.itertuples())]
    page = _page(run_dir, table, column, summary, by_subject, by_image, metrics, failures,
                 [f.relative_to(report_dir) for f in figures],
                 [(n, p.relative_to(report_dir)) for n, p in overlays], len(folders), method,
                 notes=notes, morphology=morphology, differential=differential,
                 markers=markers_section(table, report_dir))
    index = write_text(report_dir / "index.html", page, "report page")
    yield Progress(total, total, f"report written to {index}")
    return index


def write_report(run_dir, report_dir=None, **kwargs) -> Path:
    """Sync wrapper of :func:`iter_write_report`."""
    return run_to_completion(iter_write_report(run_dir, report_dir, **kwargs))


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


_METHOD_TITLES = {"umap": "UMAP", "pca": "PCA", "tsne": "t-SNE"}

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>napari-reddino report</title>
<style>{{ css }}</style></head><body>
<h1>Red-blood-cell smear report</h1>
<p class="meta">{{ run_dir }} &middot; {{ stamp }} &middot; cells counted by {{ counted }}</p>
<div class="cards">{% for name, value in cards %}
<div class="card"><b>{{ value }}</b>{{ name }}</div>{% endfor %}</div>
<h2>Cells per subject</h2>{{ by_subject }}
<p>Tables as CSV: <a href="counts_by_subject.csv">per subject</a>,
<a href="counts_by_image.csv">per image</a>, <a href="batch_metrics.csv">batch metrics</a>,
<a href="failures.csv">failures</a>.</p>
{{ differential }}
<h2>Cell map ({{ method }} of the {{ space }} space)</h2>
<div class="figs">{% for src, caption in figures %}
<figure><img src="{{ src }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>
{% if morphology %}<h2>Morphology per {{ column }}</h2>
<p>Median per group (<a href="morphology_by_{{ column }}.csv">CSV</a>); units and definitions in
the plugin's docs/morphology.md.</p>{{ morphology }}{% endif %}
{{ markers }}
<h2>Batch effects</h2>
<p>Per-subject silhouette near 0 and high subject mixing (iLISI) in the {{ space }} space mean
cells group by morphology rather than by who the smear came from.</p>
{{ metrics }}{{ summary }}
<h2>Cells per image</h2>{{ by_image }}
<h2>PCA overlays</h2>
<p>The first three principal components of each smear's patch tokens as RGB: regions the model
sees alike share a color.{% if more > 0 %}
First {{ overlays|length }} of {{ n_images }} images shown.{% endif %}</p>
<div class="figs">{% for src, caption in overlays %}
<figure><img src="{{ src }}" alt="{{ caption }}"><figcaption>{{ caption }}</figcaption></figure>
{% endfor %}</div>
<h2>Failed smears</h2>
{% if n_failed %}<p class="fail">{{ n_failed }} smear(s) could not be processed:</p>{{ failures }}
{% else %}<p>none</p>{% endif %}
<h2>Warnings</h2>
{% if notes %}<ul class="fail">{% for note in notes %}<li>{{ note }}</li>{% endfor %}</ul>
{% else %}<p>none</p>{% endif %}
</body></html>
"""


def _page(run_dir, table, column, summary, by_subject, by_image, metrics, failures,
          figures, overlays, n_images, method: str = "UMAP", notes=(),
          morphology=None, differential: str = "", markers: str = "") -> str:
    """The report page: Jinja2 with autoescape; only pandas' escaped tables pass as markup."""
    from jinja2 import Environment
    from markupsafe import Markup

    summary_rows = pd.DataFrame(
        [{"metric": k, "value": v} for k, v in summary.items() if not isinstance(v, (dict, list))]
    )
    space = str(summary.get("feature_space", nm.EMBEDDING))  # the space map and clusters used
    counted = ("class (manual or propagated)" if column == nm.CLASS
               else f"k-means cluster in the {space} space")
    cards = [("cells", len(table)), ("images", n_images),
             ("subjects", table[nm.SUBJECT].nunique()), ("failed smears", len(failures))]
    template = Environment(autoescape=True).from_string(PAGE)
    return template.render(
        css=Markup(CSS), run_dir=str(run_dir.resolve()), stamp=time.strftime("%Y-%m-%d %H:%M"),
        counted=counted, cards=cards, method=method, space=space, column=column,
        differential=Markup(differential), markers=Markup(markers),
        morphology=(Markup(_html_table(morphology, "{:.3g}"))
                    if morphology is not None and len(morphology) else ""),
        by_subject=Markup(_html_table(by_subject)), by_image=Markup(_html_table(by_image)),
        metrics=Markup(_html_table(metrics)),
        summary=Markup(_html_table(summary_rows, "{:.4g}")) if len(summary_rows) else "",
        figures=[(str(f), f.stem) for f in figures],
        overlays=[(str(p), n) for n, p in overlays], n_images=n_images,
        more=n_images - len(overlays), n_failed=len(failures), notes=list(notes),
        failures=Markup(_html_table(failures[[nm.IMAGE, "error"]])) if len(failures) else "",
    )


def differential_section(table: pd.DataFrame, report_dir: Path,
                         counted_only: bool = DEFAULTS.counted_only) -> str:
    """The differential per subject as HTML, and ``differential.csv`` (per smear too) beside
    the page: the numbers a hematologist reports, each with its interval and ICSH grade."""
    from markupsafe import escape

    from napari_reddino.io.cell_table import unlabeled_mask
    from napari_reddino.label.differential import DIFFERENTIAL_FILE, class_sources, differential
    from napari_reddino.segment.counted import counted_summary

    counted = (counted_summary(table) if counted_only
               else f"all {len(table)} objects used (counted-only off)")
    head = "<h2>Red-cell differential</h2>"
    if nm.CLASS not in table.columns or unlabeled_mask(table[nm.CLASS]).all():
        return (f"{head}<p>{escape(counted)}; no classes yet: label a few cells and propagate "
                "to get a differential.</p>")
    diff = differential(table, counted_only=counted_only)
    write_csv(diff, report_dir / DIFFERENTIAL_FILE, "differential")
    shown = diff[diff["level"] == "subject"].drop(columns=["level", nm.IMAGE])
    sources = escape(class_sources(table, counted_only=counted_only))
    return (f"{head}<p>{escape(counted)}; classes: {sources} (manual labels first, then "
            "confident predictions). Share of the counted red cells per class, with 95 % "
            "Wilson intervals (percent) and ICSH 2015 grades (Palmer et al., Int J Lab Hematol "
            "2015, doi:10.1111/ijlh.12327); per smear in "
            f'<a href="{DIFFERENTIAL_FILE}">{DIFFERENTIAL_FILE}</a>.</p>'
            + _html_table(shown, "{:.1f}"))


def markers_section(table: pd.DataFrame, report_dir: Path) -> str:
    """What marks each cluster, in words and by its strongest features (Wilcoxon rank-sum of
    every morphology feature against the other cells), and ``cluster_markers.csv``."""
    from napari_reddino.explore.markers import group_markers
    from napari_reddino.morphology.features import feature_columns

    if nm.CLUSTER not in table.columns or not feature_columns(table.columns):
        return ""
    clustered = table[pd.to_numeric(table[nm.CLUSTER], errors="coerce").fillna(-1) >= 0]
    if clustered[nm.CLUSTER].nunique() < 2:
        return ""
    markers = group_markers(clustered, clustered[nm.CLUSTER].astype(int).to_numpy())
    write_csv(markers, report_dir / "cluster_markers.csv", "cluster markers")
    return ("<h2>What marks each cluster</h2><p>Each cluster against the other cells, feature "
            "by feature (Wilcoxon rank-sum, Benjamini-Hochberg; the effect is the AUC minus "
            "0.5: positive means higher in the cluster); "
            '<a href="cluster_markers.csv">CSV</a>.</p>'
            + _html_table(markers.rename(columns={"group": nm.CLUSTER})))
