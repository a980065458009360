"""How long opening the "Embed smear (RedDino)" dock freezes napari: the dock as ``git show
REF`` has it (baseline) against this checkout.

    xvfb-run -a python benchmarks/dock_open.py [--ref HEAD] [--repeats 3]

Each measure is a fresh process that has already imported napari and opened a viewer (what a
user has when they pick the dock from the Plugins menu): the seconds from importing the dock's
module to the end of its constructor, and for this checkout the seconds until its backbone
list (found in a thread since #27) is ready. The baseline is the ``src`` tree of ``REF``
(``git archive``) put first on ``sys.path``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

PROBE = r"""
import json, sys, time
import napari
from qtpy.QtWidgets import QApplication
viewer = napari.Viewer(show=False)
QApplication.processEvents()
start = time.perf_counter()
from napari_reddino.widgets.embedding import EmbeddingWidget
widget = EmbeddingWidget(viewer)
viewer.window.add_dock_widget(widget, name="Embed smear (RedDino)")
opened = time.perf_counter() - start
heavy = sorted(m for m in ("torch", "timm", "sklearn") if m in sys.modules)
while getattr(widget, "backbones_loading", False):
    QApplication.processEvents()
    time.sleep(0.01)
listed = time.perf_counter() - start
print(json.dumps({"open": opened, "listed": listed, "heavy": heavy,
                  "module": sys.modules[EmbeddingWidget.__module__].__file__}))
"""


def measure(src: Path, repeats: int) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                              env=env, timeout=600)
        if done.returncode:
            raise SystemExit(f"probe failed:\n{done.stderr[-3000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        if not runs[-1]["module"].startswith(str(src)):
            raise SystemExit(f"imported {runs[-1]['module']}, not the tree under {src}")
    return runs


def baseline_tree(ref: str, folder: Path) -> Path:
    archive = subprocess.run(["git", "archive", ref, "src"], cwd=REPO, capture_output=True,
                             check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "src"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="HEAD", help="git ref of the baseline dock")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = measure(baseline_tree(args.ref, Path(tmp)), args.repeats)
    after = measure(REPO / "src", args.repeats)
    med = {name: {key: statistics.median(r[key] for r in runs) for key in ("open", "listed")}
           for name, runs in (("before", before), ("after", after))}
    print(f"Opening the embedding dock ({args.repeats} fresh processes each, median seconds)")
    print(f"{'measure':<44}{args.ref:>10}{'now':>10}{'ratio':>8}")
    b, a = med["before"]["open"], med["after"]["open"]
    print(f"{'napari frozen while the dock opens':<44}{b:>10.2f}{a:>10.2f}{a / b:>8.2f}")
    b, a = med["before"]["listed"], med["after"]["listed"]
    print(f"{'until the backbone list is complete':<44}{b:>10.2f}{a:>10.2f}{a / b:>8.2f}")
    print(f"imported when the dock is open: {args.ref}: {before[0]['heavy']}; "
          f"now: {after[0]['heavy']}")


if __name__ == "__main__":
    main()
