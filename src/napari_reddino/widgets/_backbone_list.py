"""The embedding dock's backbone list, found after the dock is shown.

Listing the backbones imports the registry, hence torch and timm: 6-7 s that froze napari when
the dock opened (#27). The dock opens with the bundled model as its one choice and a status
line; a thread imports and reads the Hugging Face cache, and a timer of the dock hands the
offers over on the GUI thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QObject, QTimer

LOADING = "looking for backbones (loading torch and timm)..."


def find_offers() -> tuple[dict[str, Any], str]:
    """The backbone offers by name and the recommended one (imports torch: off the GUI thread)."""
    from napari_reddino.embed import offers

    return {o.name: o for o in offers.backbone_offers()}, offers.recommended_backbone()


class OffersLoader:
    """Run :func:`find_offers` in a thread; ``on_done(offers, recommended, error)`` on the GUI
    thread. A plain thread polled by a timer owned by ``parent``, not a Qt worker: a dock
    closed (or a process quitting) before the import ends receives nothing."""

    def __init__(self, parent: QObject, on_done: Callable[..., None],
                 find: Callable[[], Any] = find_offers) -> None:
        self._found: dict[str, Any] = {}
        self._on_done = on_done
        self._thread = threading.Thread(target=self._run, args=(find,), daemon=True,
                                        name="reddino-backbone-list")
        self._timer = QTimer(parent)
        self._timer.setInterval(100)
        self._timer.timeout.connect(self._poll)
        self._thread.start()
        self._timer.start()

    @property
    def running(self) -> bool:
        return self._timer.isActive()

    def _run(self, find: Callable[[], Any]) -> None:
        try:
            self._found["offers"] = find()
        except Exception as exc:  # reported in the dock by the timer
            self._found["error"] = exc

    def _poll(self) -> None:
        if self._thread.is_alive():
            return
        self._timer.stop()
        offers, recommended = self._found.get("offers", ({}, None))
        self._on_done(offers, recommended, self._found.get("error"))
