"""The explorer's "Batch effects (by subject)" panel: per-subject mixing in a worker.

Measured in the explorer's feature space, over the cells its map uses (the counted ones while
"Counted cells only" is on), as the command line measures a run.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from napari.utils.notifications import show_warning

from napari_reddino.widgets._explorer_panels import TablePanel
from napari_reddino.widgets._workers import TaskRunner


class BatchPanel(TablePanel):
    """Per-subject silhouette / iLISI / kBET table with its Compute button."""

    def __init__(self, inputs: Callable[[], Any]) -> None:
        super().__init__("Batch effects (by subject)")
        self.inputs = inputs  # -> (table, vectors, settings) of the used cells, or None
        self.runner = TaskRunner("Compute batch metrics")
        self.runner.run_button.clicked.connect(self.run)
        self.body.insertWidget(0, self.runner)

    def run(self) -> None:
        """Batch-effect metrics by subject (and class when every cell is labeled)."""
        from napari_reddino.explore import analysis

        found = self.inputs()
        if found is None:
            return
        table, vectors, settings = found
        if "subject" not in table.columns or table["subject"].nunique() < 2:
            show_warning("batch metrics need cells from at least 2 subjects")
            return
        subjects = table["subject"].astype(str).to_numpy()
        classes = None
        if "class" in table.columns and table["class"].notna().all():
            classes = table["class"].astype(str).to_numpy()

        def job(cancel):
            return (yield from analysis.iter_batch(vectors, subjects, classes, settings, cancel))

        def on_result(report: Any) -> None:
            summary = ", ".join(
                f"{key}: {value:.3g}" if isinstance(value, float) else f"{key}: {value}"
                for key, value in report.summary.items()
            )
            self.show_frame(report.per_subject, summary)

        self.runner.start(job, on_result, task="batch metrics")
