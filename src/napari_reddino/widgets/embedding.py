"""The "Embed smear (RedDino)" dock: per-cell embeddings and the overlay that colours cells.

Thin over :func:`napari_reddino.runs.embed_smear.iter_embed_smear`, the core the pipeline
calls too (same vectors, same morphology), run in one worker with the process's one backbone
cache. The cell embeddings go to the Labels layer's ``metadata["reddino_embeddings"]`` and an
``embedding_row`` column of its ``features`` (the contract in docs/architecture.md). The default
overlay paints every cell of every open smear one colour from one PCA over them all, with a
legend in words (``_overlay_legend.py``); the per-smear patch-token overlays stay as choices
(an RGB layer ``"<image> RedDino PCA"`` placed with ``embed.overlay_transform``). The dock opens
without torch: its backbone list is found in a thread (``_backbone_list.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSlider, Label, PushButton
from napari.layers import Image, Labels
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QVBoxLayout, QWidget

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.names import EMBEDDING_ROW, EMBEDDINGS_KEY
from napari_reddino.plugin import layers
from napari_reddino.progress import Progress
from napari_reddino.runs.embed_smear import cached_backbone, checkpoint_source, iter_embed_smear
from napari_reddino.widgets._backbone_choice import describe, start_download
from napari_reddino.widgets._backbone_list import LOADING, OffersLoader
from napari_reddino.widgets._overlay_legend import CELL_COLOURS_KEY, colour_cells_of, legend_label
from napari_reddino.widgets._workers import TaskRunner, layer_choices, notify_error
from napari_reddino.widgets.segmentation import image_key, layer_image

TASK = "Embedding"
COLOUR_SPACE = DEFAULTS.space  # what the cell colours are a PCA of (the explorer's default)
DEVICES = nm.DEVICES
POOLINGS = nm.POOLINGS
# (label, subdivide): 0 paints each cell one colour, one PCA over the open smears' cells
# (_overlay_legend.py); else the patch tokens' PCA of this smear, tilings shifted by patch/k
# averaged (fine_grid.py), k^2 times the cost (a split the patch does not allow uses the next)
CELLS = 0
OVERLAY_DETAILS = [("cells: one colour each, one PCA over all open smears", CELLS),
                   ("patch tokens: patch/2 (4 tilings)", 2),
                   ("patch tokens: patch/7 (49 tilings)", 7), ("patch tokens: patch", 1)]


def embeddings_path(image_layer: Image) -> Path:
    """Default file for an image's cells: ``.h5ad`` (every column, morphology and embeddings
    together, what scanpy reads) next to its file, else in the cwd."""
    source = getattr(image_layer.source, "path", None)
    folder = Path(source).parent if source else Path.cwd()
    return folder / f"{image_key(image_layer)}.reddino.h5ad"


CELL_FILES = "Cells (*.h5ad);;Embeddings only (*.npz)"


def attach_cells(labels_layer: Labels, path: Path, image_name: str) -> None:
    """A saved ``.h5ad``'s cells as the layer's table (every column: morphology, classes, map)
    and embeddings; refused when they are not this layer's cells."""
    from napari_reddino.plugin.layers import layer_features, smear_cells
    from napari_reddino.runs.anndata_io import from_anndata, read_h5ad

    table, cells = smear_cells(*from_anndata(read_h5ad(path)), image_name)
    labels = set(labels_layer.features["label"].astype(int)) if "label" in \
        labels_layer.features else set()
    if set(table["label"].astype(int)) != labels:
        raise ValueError(f"{path.name} holds {len(table)} cells of {image_name!r} that are not "
                         f"the {len(labels)} cells of {labels_layer.name!r} (segmented again "
                         "since?); nothing was changed")
    labels_layer.metadata = {**labels_layer.metadata, EMBEDDINGS_KEY: cells}
    labels_layer.features = layer_features(table)


def attach_embeddings(labels_layer: Labels, cells: Any, image_name: str) -> None:
    """Store ``cells`` in the layer's metadata and point each feature row at its vector."""
    features = labels_layer.features.copy()
    if "label" not in features.columns:
        raise ValueError(f"layer {labels_layer.name!r} has no cell table; segment it first")
    rows = cells.rows_for(image_name, features["label"].to_numpy())
    if len(features) and (np.asarray(rows) < 0).all():
        raise ValueError(
            f"these embeddings are of {sorted(set(map(str, cells.image)))[:3]}, not of "
            f"{image_name!r}: none of its {len(features)} cells is in them; load the file "
            "saved for this image (nothing was changed)")
    features[EMBEDDING_ROW] = np.asarray(rows, dtype=np.int64)
    labels_layer.metadata = {**labels_layer.metadata, EMBEDDINGS_KEY: cells}
    labels_layer.features = features


class EmbeddingWidget(QWidget):
    """Pick a backbone, an image (and its Labels layer); get an overlay and cell vectors."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._extra_sources: list[str] = []
        # the bundled model alone until the list is found (_backbone_list.py)
        self._offers: dict[str, Any] = {}
        self.backbone = ComboBox(label="backbone", choices=self._backbone_choices,
                                 value=DEFAULTS.backbone)
        self.backbone_info = Label(value=LOADING)
        self.download_button = PushButton(text="Download")
        self.browse_folder = PushButton(text="Browse folder...")
        self.browse_pth = PushButton(text="Browse .pth...")
        self.device = ComboBox(label="device", choices=list(DEVICES), value=DEFAULTS.device)
        self.pooling = ComboBox(label="cell pooling", choices=list(POOLINGS),
                                value=DEFAULTS.pooling)
        self.image_combo = ComboBox(label="image", choices=layer_choices(napari_viewer, Image))
        self.labels_combo = ComboBox(label="cells (labels)", nullable=True,
                                     choices=layer_choices(napari_viewer, Labels))
        self.labels_combo.value = None
        self.overlay = CheckBox(text="PCA overlay", value=True)
        self.opacity = FloatSlider(label="overlay opacity", min=0.0, max=1.0, value=0.6)
        self.foreground_only = CheckBox(text="fit PCA on cells only", value=True)
        self.overlay_detail = ComboBox(label="overlay", choices=OVERLAY_DETAILS, value=CELLS)
        self.colour_by = ComboBox(label="colour cells by", choices=list(nm.FEATURE_SPACES),
                                  value=COLOUR_SPACE)
        self.colour_button = PushButton(text="Colour cells of all open smears")
        self.legend = legend_label()
        self.backbone_form = Container(
            widgets=[self.backbone, self.backbone_info, self.download_button], labels=True
        )
        self.form = Container(
            widgets=[
                self.device,
                self.pooling,
                self.image_combo,
                self.labels_combo,
                self.overlay,
                self.opacity,
                self.overlay_detail,
                self.colour_by,
                self.foreground_only,
            ],
            labels=True,
        )
        self.save_button = PushButton(text="Save embeddings...")
        self.load_button = PushButton(text="Load embeddings...")
        self.runner = TaskRunner("Embed")

        browse_row = QHBoxLayout()
        browse_row.addWidget(self.browse_folder.native)
        browse_row.addWidget(self.browse_pth.native)
        io_row = QHBoxLayout()
        io_row.addWidget(self.save_button.native)
        io_row.addWidget(self.load_button.native)
        layout = QVBoxLayout(self)
        layout.addWidget(self.backbone_form.native)
        layout.addLayout(browse_row)  # right under the backbone list they add to
        layout.addWidget(self.form.native)
        layout.addWidget(self.runner)
        layout.addWidget(self.colour_button.native)
        layout.addWidget(self.legend)
        layout.addLayout(io_row)
        layout.addStretch(1)

        self.backbone.changed.connect(self._describe_backbone)
        self.download_button.changed.connect(lambda *_: self.download_backbone())
        self.download_button.visible = False
        self._list_loader = OffersLoader(self, self._on_offers)
        self.browse_folder.changed.connect(self._browse_folder)
        self.browse_pth.changed.connect(self._browse_pth)
        self.image_combo.changed.connect(self._labels_for_image)
        self.overlay.changed.connect(self._sync_overlay)
        self.opacity.changed.connect(self._sync_overlay)
        self.colour_button.changed.connect(lambda *_: self.colour_cells())
        self.save_button.changed.connect(lambda *_: self.save_embeddings())
        self.load_button.changed.connect(lambda *_: self.load_embeddings())
        self.runner.run_button.clicked.connect(self.run)
        self._labels_for_image()

    # -- backbone choice -------------------------------------------------------------
    @property
    def backbones_loading(self) -> bool:
        """True while the backbone list is being found (it holds the bundled model alone)."""
        return self._list_loader.running

    def _on_offers(self, offers: dict[str, Any], recommended: str | None,
                   error: BaseException | None) -> None:
        """Fill the list; select the best cached model unless the user picked one meanwhile."""
        if error is not None:
            self.backbone_info.value = f"could not list backbones: {error}"
            return
        self._offers = offers
        chosen = self.backbone.value
        self.backbone.native.clear()  # magicgui keeps old items first: the list is new
        self.backbone.reset_choices()
        self.backbone.value = recommended if chosen == DEFAULTS.backbone else chosen
        self._describe_backbone()

    def _backbone_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        """(label, name): weights in the HF cache first, then the bundled model, then downloads
        (the bundled model alone while the list is being found)."""
        choices = [(o.label, o.name) for o in self._offers.values()] or [
            (f"{DEFAULTS.backbone} (bundled, offline)", DEFAULTS.backbone)]
        return choices + [(source, source) for source in self._extra_sources]

    def _describe_backbone(self, *_: Any) -> None:
        """Say what the chosen backbone is; offer its download when it is not cached."""
        if self.backbones_loading:
            self.backbone_info.value = LOADING
            return
        info, download = describe(self._offers.get(self.backbone.value))
        self.backbone_info.value = info
        self.download_button.visible = download is not None
        if download is not None:
            self.download_button.text = download

    def download_backbone(self) -> None:
        """Fetch the chosen hub backbone into the HF cache, with napari's progress bar."""
        start_download(self, self.backbone.value)

    def set_backbone_source(self, source: str) -> None:
        """Add a local folder (``local-dir:...``) or ``.pth`` file to the list and select it."""
        if source not in self._extra_sources:
            self._extra_sources.append(source)
        self.backbone.reset_choices()
        self.backbone.value = source
        self._describe_backbone()

    def _browse_folder(self, *_: Any) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Backbone folder (timm export)")
        if folder:
            self.set_backbone_source(f"local-dir:{folder}")

    def _browse_pth(self, *_: Any) -> None:
        path, _filter = QFileDialog.getOpenFileName(
            self, "Backbone checkpoint", "", "PyTorch checkpoint (*.pth *.pt)"
        )
        if path:
            self.set_backbone_source(path)

    # -- layers ------------------------------------------------------------------------
    def _labels_for_image(self, *_: Any) -> None:
        """Preselect ``"<image> labels"`` when the image changes and such a layer exists."""
        image = self.image_combo.value
        name = None if image is None else f"{image.name} labels"
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            self.labels_combo.value = self.viewer.layers[name]

    def reset_choices(self, *_: Any) -> None:
        """Re-read the layer pickers (napari calls this on every layer change); a new
        ``"<image> labels"`` layer is preselected while no labels are chosen."""
        self.image_combo.reset_choices()
        self.labels_combo.reset_choices()
        if self.labels_combo.value is None:
            self._labels_for_image()

    def _overlay_layers(self) -> list[Image]:
        """The chosen image's overlay and every cell-colour overlay (they go together)."""
        image = self.image_combo.value
        chosen = None if image is None else layers.overlay_name(image.name)
        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and (
            layer.name == chosen or CELL_COLOURS_KEY in layer.metadata)]

    def _sync_overlay(self, *_: Any) -> None:
        for layer in self._overlay_layers():
            layer.visible = self.overlay.value
            layer.opacity = self.opacity.value

    def colour_cells(self) -> list[Image]:
        """Paint every embedded smear's cells, one PCA over them all, and show the legend
        (the "Colour cells of all open smears" button; after Run in the cells overlay)."""
        return colour_cells_of(self)

    # -- running -----------------------------------------------------------------------
    def run(self, *_: Any) -> None:
        """Embed the chosen image (the Run button)."""
        image_layer = self.image_combo.value
        labels_layer = self.labels_combo.value
        if not isinstance(image_layer, Image):
            notify_error(TASK, ValueError("choose an image layer (open an image or a sample)"))
            return
        pixels = layer_image(image_layer)
        labels = None
        if labels_layer is not None:
            labels = np.asarray(labels_layer.data)
            problem = None
            if labels.shape != tuple(pixels.shape[:2]):
                problem = (f"labels {labels_layer.name!r} {labels.shape} do not match image "
                           f"{image_layer.name!r} {tuple(pixels.shape[:2])}")
            elif "label" not in labels_layer.features.columns:
                problem = (f"labels {labels_layer.name!r} have no cell table (no 'label' "
                           "feature); segment the image with the 'Segment cells' dock first")
            if problem:
                notify_error(TASK, ValueError(problem))
                return
        source, device = self.backbone.value, self.device.value
        pooling, want_overlay = self.pooling.value, self.overlay.value
        cells_only, subdivide = self.foreground_only.value, self.overlay_detail.value
        colour_cells = want_overlay and subdivide == CELLS and labels is not None
        subdivide = subdivide or 2  # no cells to colour: this smear's patch tokens
        image_name = image_key(image_layer)
        # a layer scale other than 1 is the pixel size in µm: morphology then reads in µm
        pixel_size = float(image_layer.scale[-1]) if image_layer.scale[-1] != 1 else None

        def job(cancel: Any) -> Any:
            yield Progress(0, 1, f"loading backbone {source}")
            backbone = cached_backbone(checkpoint_source(source), device)
            return (yield from iter_embed_smear(
                np.asarray(pixels), labels, backbone, pooling=pooling, pixel_size=pixel_size,
                method=None, keep_grid=False,
                overlay_subdivide=subdivide if want_overlay and not colour_cells else None,
                overlay_cells_only=cells_only, image_name=image_name, cancel=cancel))

        def on_result(smear: Any) -> None:
            if smear.overlay is not None:
                self._show_overlay(image_layer, smear)
            if smear.embeddings is not None:
                attach_embeddings(labels_layer, smear.embeddings, image_name)
            if smear.morphology is not None:
                from napari_reddino.morphology.features import merge_morphology

                labels_layer.features = merge_morphology(labels_layer.features, smear.morphology)
            if colour_cells:
                self.colour_cells()

        self.runner.start(job, on_result, task=TASK)

    def _show_overlay(self, image_layer: Image, smear: Any) -> Image:
        """Add or refresh the PCA layer, placed in the image layer's world coordinates."""
        rgb, kwargs, _kind = layers.overlay_rgb_data(
            *smear.overlay, image_layer=image_layer.name,
            scale=image_layer.scale, translate=image_layer.translate,
            backbone=smear.backbone, opacity=self.opacity.value, visible=self.overlay.value)
        if kwargs["name"] in self.viewer.layers and CELL_COLOURS_KEY in self.viewer.layers[
                kwargs["name"]].metadata:
            self.viewer.layers.remove(kwargs["name"])  # cell colours: another kind of overlay
        if kwargs["name"] in self.viewer.layers:
            layer = self.viewer.layers[kwargs["name"]]
            layer.data = rgb
            layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
            layer.visible = self.overlay.value
        else:
            layer = self.viewer.add_image(rgb, **kwargs)
            layer.interpolation2d = "linear"  # drawn smoothly, not as blocks
        return layer

    # -- save / load -------------------------------------------------------------------
    def _chosen_pair(self) -> tuple[Image, Labels]:
        image_layer, labels_layer = self.image_combo.value, self.labels_combo.value
        if image_layer is None or labels_layer is None:
            raise ValueError("choose an image and its labels layer first")
        return image_layer, labels_layer

    def save_embeddings(self, path: str | Path | None = None) -> Path | None:
        """Write the labels layer's embeddings to ``.npz`` (asks where when ``path`` is None)."""
        try:
            image_layer, labels_layer = self._chosen_pair()
            cells = labels_layer.metadata.get(EMBEDDINGS_KEY)
            if cells is None:
                raise ValueError(f"{labels_layer.name!r} has no embeddings yet; run Embed first")
            if path is None:
                path, _filter = QFileDialog.getSaveFileName(
                    self, "Save cells", str(embeddings_path(image_layer)), CELL_FILES)
                if not path:
                    return None
            path = Path(path)
            if path.suffix.lower() == ".h5ad":  # the whole table: morphology, classes, maps
                from napari_reddino.runs.anndata_io import to_anndata, write_h5ad

                table = labels_layer.features.drop(columns=["index"], errors="ignore")
                vectors = cells.vectors[table[EMBEDDING_ROW].to_numpy(np.int64)]
                write_h5ad(to_anndata(table, vectors, backbone=cells.backbone,
                                      pooling=cells.pooling), path)
            else:
                cells.save(path)
        except (OSError, ValueError) as exc:
            notify_error("Saving embeddings", exc)
            return None
        return path

    def load_embeddings(self, path: str | Path | None = None) -> bool:
        """Read ``.npz`` embeddings into the chosen labels layer (asks when ``path`` is None)."""
        from napari_reddino.io.cell_table import CellEmbeddings

        try:
            image_layer, labels_layer = self._chosen_pair()
            if path is None:
                path, _filter = QFileDialog.getOpenFileName(
                    self, "Load cells", str(embeddings_path(image_layer)), CELL_FILES)
                if not path:
                    return False
            if Path(path).suffix.lower() == ".h5ad":
                attach_cells(labels_layer, Path(path), image_key(image_layer))
            else:
                cells = CellEmbeddings.load(Path(path))
                attach_embeddings(labels_layer, cells, image_key(image_layer))
        except (OSError, ValueError, KeyError) as exc:
            notify_error("Loading embeddings", exc)
            return False
        return True
