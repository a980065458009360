"""Screenshot of a run folder opened in napari: the bundled real smears through the CLI.

Run under a display (or Xvfb), from the repository root::

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_run_screenshot.py [--backbone NAME]

Writes a run with ``napari-reddino embed`` + ``project`` on the two bundled Chula smears (two
diagnoses, one subject each), opens the folder with ``viewer.open(run, plugin="napari-reddino")``
(File > Open does the same), docks the explorer colored by cluster, and saves
``docs/images/run_folder.png``.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from qtpy.QtWidgets import QApplication

sys.path.insert(0, str(Path(__file__).parent))
from make_screenshots import settle

IMAGES = Path(__file__).parent / "images"


def write_run(root: Path, backbone: str | None) -> Path:
    from napari_reddino.cli.main import main
    from napari_reddino.plugin.samples import REAL_SMEARS, real_smear_path

    inputs = []
    for name in REAL_SMEARS:
        target = root / "input" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(real_smear_path(name).read_bytes())
        inputs.append(str(target))
    with open(root / "subjects.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([("image", "subject"), *REAL_SMEARS.items()])
    run = root / "run"
    extra = ["--backbone", backbone] if backbone else []
    assert main(["-q", "embed", *inputs, "--out", str(run), "--subjects",
                 str(root / "subjects.csv"), *extra]) == 0
    assert main(["-q", "project", str(run), "--clusters", "6"]) == 0
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default=None, help="registry name, local-dir:... or folder")
    args = parser.parse_args()
    IMAGES.mkdir(parents=True, exist_ok=True)
    run = write_run(Path(tempfile.mkdtemp(prefix="reddino-run-")), args.backbone)

    import napari

    viewer = napari.Viewer(title="napari-reddino: a run folder")
    viewer.window.resize(1500, 950)
    layers = viewer.open(str(run), plugin="napari-reddino")
    for layer in layers:  # show the first smear; the second stays in the layer list
        layer.visible = "elliptocytosis" in layer.name and "PCA" not in layer.name
    _, explorer = viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")
    explorer.color_column.setCurrentText("cluster")
    settle(viewer, 1.0)
    viewer.reset_view()  # after the dock took its width: the whole smear in view
    settle(viewer, 2.0)
    path = IMAGES / "run_folder.png"
    viewer.screenshot(str(path), canvas_only=False)
    cells = explorer.layer_cells
    print(f"wrote {path} ({len(cells)} cells of {len(cells.layers)} smears)")
    QApplication.instance().closeAllWindows()


if __name__ == "__main__":
    main()
