"""The labeling dock's "Reference model" panel: cells arrive classified, the user corrects them.

Annotate runs ``label.annotate.annotate_table`` (the rules of ``rd.tl.annotate`` and
``napari-reddino annotate``) over the gathered cells in a worker; its classes go through the
dock's :class:`~._review.LabelBook` (one undo step) and every column through the shared session,
so every dock and the explorer's coloring follow. Manual labels (clusters, lasso, review queue)
are never touched: they stay ``class_source`` manual. Update model refits the model of the model
line on its reference cells plus the manual labels and cross-validates it with whole smears held
out, in a worker; its score shows before Save model writes it, and the saved folder then is
what the model line reads.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
)

from napari_reddino import names as nm
from napari_reddino.label.annotate import annotate_table, annotation_summary, resolve_model
from napari_reddino.label.classes import ClassSet
from napari_reddino.label.reference import (
    DEFAULT_REFERENCE,
    MODEL_FILE,
    WEIGHTS,
    ReferenceModel,
    manual_classes,
)
from napari_reddino.plugin.session import LayerCells, SessionError
from napari_reddino.progress import Progress, check_cancel
from napari_reddino.widgets._workers import TaskRunner

PREDICTION_COLUMNS = (nm.PREDICTED_CLASS, nm.ASSIGNED, nm.UNASSIGNED_REASON)


def bundled_models() -> list[str]:
    """Names of the reference models shipped with the plugin, the default one first."""
    names = sorted(p.parent.name for p in WEIGHTS.glob(f"*/{MODEL_FILE}"))
    return sorted(names, key=lambda name: name != DEFAULT_REFERENCE)


def iter_in_thread(work: Callable[[Callable], Any], cancel: threading.Event | None):
    """Run ``work(report)`` in a helper thread and yield each ``report(done, total, message)``
    as :class:`Progress` while it runs (the core's fitting reports through a callback); returns
    what ``work`` returned. The cancel event is checked at each report and while waiting."""
    reports: queue.Queue = queue.Queue()
    outcome: dict[str, Any] = {}

    def report(done: int, total: int, message: str = "") -> None:
        check_cancel(cancel)
        reports.put(Progress(int(done), int(total), message))

    def target() -> None:
        try:
            outcome["result"] = work(report)
        except BaseException as exc:  # handed to the worker below, which reports it
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="reddino-reference-model", daemon=True)
    thread.start()
    while thread.is_alive() or not reports.empty():
        try:
            yield reports.get(timeout=0.1)
        except queue.Empty:
            check_cancel(cancel)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def check_inputs(model: ReferenceModel, table) -> None:
    """A clear message when the cells lack the morphology the model reads."""
    missing = [c for c in model.columns if c not in table.columns]
    if missing:
        raise ValueError(f"the cells lack {len(missing)} of the {len(model.columns)} "
                         f"morphology columns {model.name} reads (e.g. {missing[0]}): embed the "
                         "smear with the embedding dock, which measures them")


def _score_words(new: dict, old: dict) -> str:
    def one(key: str, text: str) -> str:
        was = f" (was {old[key]:.3f})" if key in old else ""
        return f"{text} {new[key]:.3f}{was}"

    return (f"{one('accuracy', 'accuracy')}, {one('macro_f1', 'macro F1')}, "
            f"{one('ece', 'calibration error')}; {100 * new.get('coverage', 0):.0f} % of "
            "held-out cells assigned")


class AnnotatePanel(QGroupBox):
    """Model line, Annotate, Update model, Save model."""

    def __init__(self, viewer: Any, session: Any, book: Any, classes: Any,
                 on_edit: Callable[[str], None]) -> None:
        super().__init__("Reference model")
        self.viewer, self.session, self.book, self.classes = viewer, session, book, classes
        self.on_edit = on_edit  # the dock's status, autosave and counts after an edit
        self.models: dict[str, ReferenceModel] = {}  # loaded models by model-line key
        self.unsaved: str | None = None  # key of an updated model not saved yet
        self.model_line = QComboBox()
        self.model_line.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_line.setMinimumContentsLength(12)  # long folder names must not widen the dock
        for name in bundled_models():
            self.model_line.addItem(f"{name} (bundled)", name)
        self.model_line.setToolTip("The reference model that classifies the cells: a bundled "
                                   "one, or a folder saved by Save model or --update-model")
        self.browse_button = QPushButton("Browse folder...")
        self.browse_button.clicked.connect(lambda: self.browse())
        self.vote = QCheckBox("Vote by cluster")  # short: the dock must fit a laptop's width
        self.vote.setToolTip("Predicted cells take their cluster's majority class "
                             "(the CLI's --vote-clusters)")
        self.annotate_runner = TaskRunner("Annotate")
        self.annotate_runner.run_button.setToolTip(
            "Give every counted cell the model's class (class_source predicted); manual labels "
            "are kept")
        self.annotate_runner.run_button.clicked.connect(self.annotate)
        self.update_runner = TaskRunner("Update model")
        self.update_runner.run_button.setToolTip(
            "Refit the model on its reference cells plus your manual labels and cross-validate "
            "it (whole smears held out)")
        self.update_runner.run_button.clicked.connect(self.update_model)
        self.save_button = QPushButton("Save model...")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(lambda: self.save_model())
        self.info = QLabel("Annotate: every counted cell gets the model's class; correct the "
                           "wrong ones by hand, then Update model")
        self.info.setWordWrap(True)
        form = QFormLayout(self)
        line = QHBoxLayout()
        line.addWidget(self.model_line, 1)
        line.addWidget(self.browse_button)
        form.addRow("Model", line)
        form.addRow(self.vote)
        form.addRow(self.annotate_runner)
        form.addRow(self.update_runner)
        form.addRow(self.save_button)
        form.addRow(self.info)

    # --- the model line -----------------------------------------------------------------
    def model_key(self) -> str:
        return str(self.model_line.currentData())

    def _show_model(self, key: str, text: str) -> None:
        index = self.model_line.findData(key)
        if index < 0:
            self.model_line.addItem(text, key)
            index = self.model_line.count() - 1
        self.model_line.setCurrentIndex(index)

    def browse(self, folder: str | Path | None = None) -> ReferenceModel | None:
        """Read a saved model folder (``model.json`` + ``model.npz``) into the model line."""
        if folder is None:
            folder = QFileDialog.getExistingDirectory(
                self, "Open a saved reference model (a folder with model.json)")
            if not folder:
                return None
        try:
            model = ReferenceModel.load(folder)
        except (OSError, ValueError, KeyError) as err:
            show_error(f"reference model: {err}")
            return None
        key = str(Path(folder))
        self.models[key] = model
        self._show_model(key, key)
        self.info.setText(f"{model.name} from {key}: {len(model.classes)} classes, trained on "
                          f"{len(model.train_codes)} cells")
        return model

    def _gathered(self) -> LayerCells | None:
        if self.session.layer_cells is None:
            try:
                self.session.set_layer_cells(LayerCells.from_layers(self.viewer.layers))
            except SessionError as err:
                show_warning(str(err))
        return self.session.layer_cells

    # --- annotate -----------------------------------------------------------------------
    def annotate(self) -> None:
        """The model's class for every counted cell of the gathered layers, in a worker."""
        layer_cells = self._gathered()
        if layer_cells is None:
            return
        key, loaded = self.model_key(), self.models.get(self.model_key())
        table, counted_only = layer_cells.public_table(), self.session.counted_only
        vote = self.vote.isChecked()
        before = manual_classes(table) != None  # noqa: E711 (object array)

        def job(cancel):
            yield Progress(0, 2, f"loading the reference model {key}")
            model = loaded or resolve_model(key)
            check_inputs(model, table)
            check_cancel(cancel)
            yield Progress(1, 2, f"{model.name}: classifying {len(table)} objects")
            out = annotate_table(table, model, counted_only=counted_only, vote_clusters=vote)
            return model, out

        def on_result(result) -> None:
            model, out = result
            if self.session.layer_cells is not layer_cells:
                raise SessionError("the cells changed while annotating; run it again")
            self.models[key] = model
            self._cover_classes(model)
            now = self.book.manual_classes() != None  # noqa: E711 (labeled meanwhile)
            rows = np.flatnonzero(~(before | now))  # manual labels are never touched
            self.book.edit(rows, {name: out[name].to_numpy(dtype=object)[rows]
                                  for name in (nm.CLASS, nm.CLASS_SOURCE, nm.CONFIDENCE)},
                           f"annotate with {model.name}")
            self.session.write_columns({name: out[name].to_numpy()[rows]
                                        for name in PREDICTION_COLUMNS}, rows)
            summary = annotation_summary(out)
            self.info.setText(f"{model.name}: {summary}")
            self.on_edit(f"annotated with {model.name}: {summary}")

        self.annotate_runner.start(job, on_result, task="annotation")

    def _cover_classes(self, model: ReferenceModel) -> None:
        """The dock's class set holds the model's classes (colors, keys): the model's own set
        while no cell has a class, else the current set with the missing ones added."""
        current = self.classes.class_set
        missing = [name for name in model.classes if name not in current]
        if not missing:
            return
        if all(c is None for c in self.book.classes()):
            self.classes.set_class_set(ClassSet(tuple(model.classes), title=model.name))
            return
        for name in missing:
            current = current.add(name)
        self.classes.set_class_set(current)

    # --- update and save ----------------------------------------------------------------
    def update_model(self) -> None:
        """Refit the model on its reference cells plus the manual labels, cross-validate it
        (whole smears held out) in a worker, and show its score; Save model keeps it."""
        layer_cells = self._gathered()
        if layer_cells is None:
            return
        table = layer_cells.public_table()
        n_manual = int(sum(c is not None for c in manual_classes(table)))
        if n_manual == 0:
            show_info("no manual labels yet: correct some cells by hand (clusters, lasso, "
                      "review queue), then update the model")
            return
        key, loaded = self.model_key(), self.models.get(self.model_key())

        def refit(report):
            report(0, 1, f"loading the reference model {key}")
            base = loaded or resolve_model(key)
            check_inputs(base, table)
            report(0, 1, f"refitting {base.name} on its {len(base.train_codes)} cells plus "
                   f"{n_manual} manual labels")
            model = base.update(table)
            model.cross_validate(progress=lambda i, n, message: report(i + 1, n + 1, message))
            return base, model

        def job(cancel):
            return (yield from iter_in_thread(refit, cancel))

        def on_result(result) -> None:
            base, model = result
            self.models.setdefault(key, base)
            self._forget_unsaved()
            self.unsaved = f"updated:{key}"
            self.models[self.unsaved] = model
            self._show_model(self.unsaved, f"{base.name} + {n_manual} manual labels (not saved)")
            self.save_button.setEnabled(True)
            scores = _score_words(model.scores, base.scores)
            self.info.setText(
                f"Refit on {len(base.train_codes)} reference cells + {n_manual} manual labels. "
                f"Cross-validated with whole smears held out: {scores}. Save model... keeps "
                "it; Annotate uses it now.")

        self.update_runner.start(job, on_result, task="model update")

    def _forget_unsaved(self) -> None:
        if self.unsaved is not None:
            self.models.pop(self.unsaved, None)
            index = self.model_line.findData(self.unsaved)
            if index >= 0:
                self.model_line.removeItem(index)
        self.unsaved = None
        self.save_button.setEnabled(False)

    def save_model(self, folder: str | Path | None = None) -> Path | None:
        """Write the updated model to a folder, which the model line then reads."""
        model = self.models.get(self.unsaved) if self.unsaved is not None else None
        if model is None:
            show_info("Update model first: it refits the model on your manual labels")
            return None
        if folder is None:
            folder = QFileDialog.getExistingDirectory(self, "Save the reference model to a folder")
            if not folder:
                return None
        try:
            saved = model.save(folder)
        except (OSError, ValueError) as err:
            show_error(f"saving the reference model failed: {err}")
            return None
        self._forget_unsaved()
        if self.browse(saved) is not None:
            self.info.setText(f"{model.name} saved to {saved} (accuracy "
                              f"{model.scores['accuracy']:.3f}, macro F1 "
                              f"{model.scores['macro_f1']:.3f}); the model line reads it now")
        return saved
