"""Fixtures for the dock tests: every test here drives a real napari.Viewer under Xvfb."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from napari.utils.notifications import NotificationSeverity, notification_manager

# napari's canvas on Mesa (Xvfb: llvmpipe) maps the system libLLVM; Triton's own LLVM loaded
# after it segfaults the process (see napari_reddino._triton_guard, run by napari_reddino.widgets).
# The docks block Triton when they open; tests may import torch before or after any viewer,
# so the whole widget session runs without Triton (nothing here uses torch.compile).
sys.modules.setdefault("triton", None)

WORKER_TIMEOUT_MS = 120_000


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.widget)


@pytest.fixture
def error_messages():
    """A callable returning the error notifications shown since the test started."""
    start = len(notification_manager.records)

    def messages() -> list[str]:
        return [
            str(n.message)
            for n in notification_manager.records[start:]
            if n.severity == NotificationSeverity.ERROR
        ]

    return messages


@pytest.fixture
def wait_idle(qtbot):
    """Wait until a dock's TaskRunner has finished its worker (and handled the result)."""

    def wait(runner, timeout: int = WORKER_TIMEOUT_MS) -> None:
        qtbot.waitUntil(lambda: not runner.is_running, timeout=timeout)

    return wait


@pytest.fixture(autouse=True)
def _user_cache_in_tmp(tmp_path, monkeypatch):
    """Label autosaves (and anything else per-user) go to the test's folder, not ~/.cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))


@pytest.fixture(autouse=True)
def _public_napari_api_only(recwarn):
    """napari warns when a plugin reaches a private attribute through the viewer proxy it hands
    to docks (and will block it): no dock test may trigger that warning."""
    yield
    private = [str(w.message) for w in recwarn if "Private attribute access" in str(w.message)]
    assert not private, private
