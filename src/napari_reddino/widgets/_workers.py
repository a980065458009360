"""Shared dock plumbing: run a core ``iter_*`` generator off the GUI thread.

Every dock owns one :class:`TaskRunner` (Run / Cancel buttons and a status line); progress
shows in napari's activity dock (``napari.utils.progress``), as every napari task's does. The
dock builds a *job*: a generator function taking the cancel ``threading.Event`` and
``yield from``-ing core generators (which yield :class:`~napari_reddino.progress.Progress` and
``return`` their result). The runner wraps it in a napari generator worker, mirrors each
``Progress`` into the activity dock, delivers the returned value to a callback on the main
thread, and turns errors into one short napari notification instead of a traceback.
:func:`layer_choices` feeds the docks' layer pickers; napari refreshes them by calling the
dock's ``reset_choices`` on every layer change, as it does for magicgui widgets.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from typing import Any

from napari.qt.threading import GeneratorWorker, create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_reddino.progress import Cancelled, Progress
from napari_reddino.widgets._backbone_choice import weights_message  # buttons, not Python

Job = Callable[[threading.Event], Generator[Any, Any, Any]]

_BAR_STEPS = 1000


class TaskError(Exception):
    """A failure inside a job, re-raised under a type superqt does not swallow.

    superqt's generator worker treats a ``RuntimeError`` as "worker deleted" and only
    warns; torch reports most failures as ``RuntimeError``, so they are wrapped here.
    """


def error_message(task: str, exc: BaseException) -> str:
    """One line for the user: what failed and why (no traceback)."""
    text = weights_message(exc) or str(exc).strip() or type(exc).__name__
    return f"{task} failed: {text}"


def notify_error(task: str, exc: BaseException) -> None:
    """Show ``exc`` as a napari error notification for ``task``."""
    show_error(error_message(task, exc))


def _drive(job: Job, cancel: threading.Event) -> Generator[Any, Any, Any]:
    """Run ``job`` in the worker thread, re-typing RuntimeErrors (see :class:`TaskError`)."""
    try:
        return (yield from job(cancel))
    except RuntimeError as exc:
        raise TaskError(str(exc)) from exc


class TaskRunner(QWidget):
    """Run/Cancel buttons and a status line driving one worker at a time."""

    finished = Signal(str)  # "done", "cancelled" or "failed", after the callback ran

    def __init__(self, run_text: str = "Run", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run_button = QPushButton(run_text)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addWidget(self.status)

        self.worker: GeneratorWorker | None = None
        self.activity: napari_progress | None = None  # the task in napari's activity dock
        self._cancel_event: threading.Event | None = None
        self._outcome = "done"
        self._ended = False  # the result or error is in: later progress must not overwrite it

    @property
    def is_running(self) -> bool:
        """True from :meth:`start` until the worker's ``finished`` signal was handled."""
        return self.worker is not None

    def start(self, job: Job, on_result: Callable[[Any], None], *, task: str) -> GeneratorWorker:
        """Run ``job(cancel_event)`` in a worker; ``on_result`` gets its return value."""
        if self.is_running:
            show_info(f"{task}: already running; cancel it first")
            return self.worker
        self._cancel_event = threading.Event()
        self._outcome, self._ended = "done", False
        worker = create_worker(_drive, job, self._cancel_event, _ignore_errors=True)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_returned(task, on_result, result))
        worker.errored.connect(lambda exc: self._on_errored(task, exc))
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"{task}: starting...")
        self.activity = napari_progress(total=_BAR_STEPS, desc=task)
        worker.start()
        return worker

    def cancel(self) -> None:
        """Ask the running job to stop: sets its cancel event and quits the worker."""
        if self._cancel_event is not None:
            self._cancel_event.set()
        if self.worker is not None:
            self.status.setText("Cancelling...")
            self.cancel_button.setEnabled(False)
            self.worker.quit()

    def _on_progress(self, item: Any) -> None:
        if not isinstance(item, Progress):
            return
        activity = self.activity  # its events may run the Qt loop, which may finish the task
        if activity is not None:
            if item.message:
                activity.set_description(item.message)
            if self.activity is activity:  # still the running task's
                activity.update(round(item.fraction * _BAR_STEPS) - activity.n)
        if item.message and not self._ended:  # napari's bar runs the Qt loop: the task may
            self.status.setText(f"{item.message} ({item.done}/{item.total})")  # be over

    def _on_returned(self, task: str, on_result: Callable[[Any], None], result: Any) -> None:
        self._ended = True
        try:
            on_result(result)
        except Exception as exc:  # a bad result must not escape into the Qt event loop
            self._outcome = "failed"
            self.status.setText(error_message(task, exc))
            notify_error(task, exc)
            return
        self.status.setText(f"{task}: done")

    def _on_errored(self, task: str, exc: BaseException) -> None:
        self._ended = True
        if isinstance(exc, Cancelled):
            self._on_aborted()
            return
        self._outcome = "failed"
        self.status.setText(error_message(task, exc))
        notify_error(task, exc)

    def _on_aborted(self) -> None:
        self._ended = True
        self._outcome = "cancelled"
        self.status.setText("Cancelled")
        show_info("Cancelled by the user")

    def _on_finished(self) -> None:
        if self.activity is not None:
            self.activity.close()
            self.activity = None
        self.worker = None
        self._cancel_event = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.finished.emit(self._outcome)


def layer_choices(viewer: Any, layer_type: type | tuple[type, ...]) -> Callable[..., list]:
    """A magicgui ``choices`` callable: (name, layer) for the viewer's layers of ``layer_type``.

    A picker built on it is re-read by ``reset_choices``, which napari calls on any dock that
    has one whenever a layer is added, removed, moved or renamed.
    """

    def choices(_widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in viewer.layers if isinstance(layer, layer_type)]

    return choices
