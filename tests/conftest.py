"""Shared test fixtures. Widget tests need a display: `make test` runs pytest under xvfb-run."""

from __future__ import annotations

import os

os.environ.setdefault("QT_API", "pyqt6")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; loaders must fail clearly
