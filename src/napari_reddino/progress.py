"""The progress protocol every long core step speaks.

A long step is a generator that yields :class:`Progress` and *returns* its result
(``return result`` inside the generator). Widgets wrap it in a napari generator
worker, the CLI in a rich progress bar, scripts call :func:`run_to_completion`.
Cancellation: pass a ``threading.Event`` as ``cancel``; the generator calls
:func:`check_cancel` between units of work and raises :class:`Cancelled`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One progress report: ``done`` of ``total`` units, and what is happening."""

    done: int
    total: int
    message: str = ""

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)


class Cancelled(Exception):
    """Raised inside a core generator when its cancel event is set."""


def check_cancel(cancel: threading.Event | None) -> None:
    """Raise :class:`Cancelled` if ``cancel`` is set."""
    if cancel is not None and cancel.is_set():
        raise Cancelled("cancelled by the user")


ProgressGen = Generator[Progress, None, T]


def run_to_completion(
    gen: Generator[Progress, Any, T], on_progress: Callable[[Progress], None] | None = None
) -> T:
    """Drain a progress generator and return its result (what it ``return``-ed)."""
    while True:
        try:
            p = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(p)
