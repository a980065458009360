"""Screenshots of the morphology in the explorer: the map colored by a morphology feature, and a
cell's detail (hover panel with its morphology in words and numbers).

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_morphology_screenshots.py

Opens the bundled real thalassemia smear (Chula RBC, MIT), segments and embeds it with the docks
(the embedding dock also measures the morphology), projects the cells in the ``both`` space,
colors the map by ``morph_equivalent_diameter`` and hovers the palest cell.
"""

from __future__ import annotations

import sys
from pathlib import Path

import napari
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from make_screenshots import IMAGES, segment_and_embed, settle, wait_for

SMEAR = Path(__file__).parents[1] / "src" / "napari_reddino" / "data" / "chula_thalassemia.jpg"


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(title="napari-reddino")
    viewer.window.resize(1600, 1000)
    image = viewer.open(str(SMEAR), layer_type="image")[0]
    segment_and_embed(viewer, [image])
    _d, explorer = viewer.window.add_plugin_dock_widget("napari-reddino", "Cell explorer (UMAP)")
    explorer.refresh()
    explorer.space.setCurrentText("both")
    explorer.method.setCurrentText("UMAP")
    explorer.project_runner.run_button.click()
    wait_for(explorer.project_runner)
    explorer.color_column.setCurrentText("morph_equivalent_diameter")
    table = explorer.layer_cells.table
    index = int(np.nanargmin(table["morph_pallor_rim_ratio"].to_numpy()))  # the palest center
    explorer.session.select([index])
    explorer._on_hover(index)
    settle(viewer, 2.0)
    viewer.screenshot(str(IMAGES / "explorer_morphology.png"), canvas_only=False)
    panel = explorer.hover_panel  # the whole panel, not the part the dock's scroll area shows
    panel.resize(max(panel.width(), 420), panel.details.heightForWidth(320) + 10)
    panel.grab().save(str(IMAGES / "cell_detail_morphology.png"))
    print(f"wrote {IMAGES / 'explorer_morphology.png'} and cell_detail_morphology.png; "
          f"cell {table['label'].iloc[index]}: space {explorer.space.currentText()}")
    viewer.close()


if __name__ == "__main__":
    main()
