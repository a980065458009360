"""SIGTERM -> finish the step, write a checkpoint, exit 0: a preempted job resumes where it was.

SLURM (preemption, ``--signal=TERM@120`` before the time limit, ``scancel``) and Kubernetes
evictions send SIGTERM and kill the job moments later; without a handler the steps since the last
checkpoint are lost. The handler only sets a flag: the loop checks it after each step, all ranks
agree (one rank's signal stops all), and the normal end-of-run checkpoint is written.
"""

from __future__ import annotations

import signal
import threading

STOP_SIGNALS = (signal.SIGTERM,)


class StopSignal:
    """Within ``with``: a stop signal is recorded in :attr:`received` instead of killing us."""

    def __init__(self, signals: tuple[int, ...] = STOP_SIGNALS):
        self.signals, self.received, self._previous = signals, None, {}

    def _handle(self, signum, _frame) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignal:
        if threading.current_thread() is threading.main_thread():  # handlers live there only
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

