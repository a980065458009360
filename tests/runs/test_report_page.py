"""The report page escapes what it shows, and importing the report leaves matplotlib alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from napari_reddino.runs import report


def test_names_from_the_data_cannot_inject_markup(tmp_path):
    table = pd.DataFrame({"subject": ["<script>alert(1)</script>"], "image": ["a.png"]})
    failures = pd.DataFrame({"image": ["<img src=x onerror=alert(2)>"], "error": ["bad & worse"]})
    page = report._page(tmp_path, table, "cluster", {"projection": "<i>umap</i>"},
                        pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), failures,
                        [Path("images/umap_<b>.png")], [("<b>x</b>.png", Path("images/p.png"))],
                        1, "UMAP")
    assert "<script>" not in page and "<img src=x" not in page and "<b>x</b>" not in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page and "bad &amp; worse" in page
    assert "&lt;b&gt;x&lt;/b&gt;.png" in page and "<table" in page  # pandas' tables stay tables
    assert "1 smear(s) could not be processed" in page


def test_importing_the_report_keeps_the_matplotlib_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import napari_reddino.runs.report; "
            "import sys; print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["svg", "False"]
