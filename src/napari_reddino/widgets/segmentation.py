"""The "Segment cells" dock: image layer in, Labels layer with a cell table out.

Thin over :func:`napari_reddino.segment.dispatch.iter_segment`: the dock collects the method
and its parameters, runs the core generator in a worker (:mod:`._workers`) and adds
(or refreshes) a Labels layer ``"<image> labels"`` whose ``features`` is the core's
cell table and whose ``metadata`` says which image, subject and method made it. Objects that do
not count (border cells, white cells, platelets, marks, clumps) are greyed at once, and the dock
says how many count.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QFileDialog, QLabel, QVBoxLayout, QWidget

from napari_reddino import names as nm
from napari_reddino.defaults import DEFAULTS
from napari_reddino.plugin import layers
from napari_reddino.plugin.session import session_for
from napari_reddino.segment.counted import counted_summary
from napari_reddino.widgets._corrections import CorrectionPanel, follow
from napari_reddino.widgets._counted import grey_not_counted
from napari_reddino.widgets._workers import TaskRunner, layer_choices, notify_error

TASK = "Segmentation"
GPU_CHOICES = {"auto": "auto", "on": True, "off": False}


def layer_image(layer: Image) -> Any:
    """The full-resolution pixel array of an Image layer (level 0 when multiscale)."""
    return layer.data[0] if layer.multiscale else layer.data


def image_key(layer: Image) -> str:
    """The name a cell table uses for this image: its metadata ``image`` or the layer name."""
    return str(layer.metadata.get("image") or layer.name)


class SegmentationWidget(QWidget):
    """Pick an image layer and a method (classical / cellpose), run, get a Labels layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.image_combo = ComboBox(label="image", choices=layer_choices(napari_viewer, Image))
        self.method = ComboBox(label="method", choices=list(nm.SEGMENT_METHODS),
                               value=DEFAULTS.segment_method)
        self.subject = LineEdit(label="subject", value="unknown")

        self.min_area = SpinBox(label="min area (px, 0 = auto)", min=0, max=10**7, value=0)
        self.max_area = SpinBox(label="max area (px, 0 = auto)", min=0, max=10**7, value=0)
        # cells cut by the border are kept and flagged (table column ``touches_border``)
        self.exclude_border = CheckBox(text="exclude cells touching the border",
                                       value=DEFAULTS.exclude_border)
        self.classical_box = Container(widgets=[self.min_area, self.max_area], labels=True)

        self.cp_model = LineEdit(label="model (name or file)", value=DEFAULTS.cellpose_model)
        self.cp_browse = PushButton(text="Browse model file...")
        self.diameter = FloatSpinBox(label="diameter (px, 0 = auto)", min=0, max=1000, value=0)
        self.flow_threshold = FloatSpinBox(
            label="flow threshold", min=0.0, max=3.0, step=0.05, value=DEFAULTS.flow_threshold
        )
        self.cellprob_threshold = FloatSpinBox(
            label="cell-prob threshold", min=-6.0, max=6.0, step=0.25,
            value=DEFAULTS.cellprob_threshold,
        )
        self.gpu = ComboBox(label="GPU", choices=list(GPU_CHOICES), value="auto")
        self.cellpose_box = Container(
            widgets=[
                self.cp_model,
                self.cp_browse,
                self.diameter,
                self.flow_threshold,
                self.cellprob_threshold,
                self.gpu,
            ],
            labels=True,
        )
        self.form = Container(
            widgets=[
                self.image_combo,
                self.method,
                self.subject,
                self.exclude_border,
                self.classical_box,
                self.cellpose_box,
            ],
            labels=True,
        )
        self.runner = TaskRunner("Segment")
        self.counted_label = QLabel("")  # "N of M objects counted" after a run
        self.counted_label.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.runner)
        layout.addWidget(self.counted_label)
        self.corrections = CorrectionPanel(napari_viewer)  # merge / split; rows follow paint
        self.epochs = SpinBox(label="training epochs", min=1, max=2000, value=100)
        self.train_runner = TaskRunner("Train Cellpose from corrected smears")
        layout.addWidget(self.corrections)
        layout.addWidget(Container(widgets=[self.epochs], labels=True).native)
        layout.addWidget(self.train_runner)
        layout.addStretch(1)

        self.method.changed.connect(self._show_method_params)
        self.image_combo.changed.connect(self._subject_from_layer)
        self.cp_browse.changed.connect(self._browse_model)
        self.runner.run_button.clicked.connect(self.run)
        self.train_runner.run_button.clicked.connect(self.train_from_corrections)
        self._show_method_params()
        self._subject_from_layer()

    def reset_choices(self, *_: Any) -> None:
        """Re-read the image picker; napari calls this on every layer change."""
        self.image_combo.reset_choices()

    # -- parameters ----------------------------------------------------------------
    def _show_method_params(self, *_: Any) -> None:
        classical = self.method.value == "classical"
        self.classical_box.visible = classical
        self.cellpose_box.visible = not classical

    def _subject_from_layer(self, *_: Any) -> None:
        layer = self.image_combo.value
        if layer is not None:
            self.subject.value = str(layer.metadata.get("subject", "unknown"))

    def _browse_model(self, *_: Any) -> None:
        path, _filter = QFileDialog.getOpenFileName(self, "Cellpose model file")
        if path:
            self.cp_model.value = path

    def params(self) -> dict[str, Any]:
        """The core keyword arguments for the chosen method (0 means "let the core choose")."""
        if self.method.value == "classical":
            return {
                "min_area": self.min_area.value or None,
                "max_area": self.max_area.value or None,
                "exclude_border": self.exclude_border.value,
            }
        return {
            "exclude_border": self.exclude_border.value,
            "model": self.cp_model.value.strip() or DEFAULTS.cellpose_model,
            "diameter": self.diameter.value or None,
            "flow_threshold": self.flow_threshold.value,
            "cellprob_threshold": self.cellprob_threshold.value,
            "gpu": GPU_CHOICES[self.gpu.value],
        }

    # -- running -------------------------------------------------------------------
    def run(self, *_: Any) -> None:
        """Start segmenting the chosen image layer (the Run button)."""
        layer = self.image_combo.value
        if not isinstance(layer, Image):
            notify_error(TASK, ValueError("choose an image layer (open an image or a sample)"))
            return
        from napari_reddino.segment import dispatch

        method = self.method.value
        params = self.params()
        image_name = image_key(layer)
        subject = self.subject.value.strip() or "unknown"
        pixels = layer_image(layer)

        def job(cancel: Any) -> Any:
            return (
                yield from dispatch.iter_segment(
                    pixels,  # a lazy (dask/zarr) smear is segmented tile by tile, never whole
                    method,
                    cancel=cancel,
                    image_name=image_name,
                    subject=subject,
                    **params,
                )
            )

        def on_result(result: Any) -> None:
            self._show_result(layer, result, method=method, subject=subject, params=params)

        self.runner.start(job, on_result, task=TASK)

    def _show_result(
        self,
        image_layer: Image,
        result: Any,
        *,
        method: str,
        subject: str,
        params: dict[str, Any],
    ) -> Labels:
        warning = getattr(result, "warning", None)
        if warning:  # an implausible result must not pass for "done"
            show_warning(f"{TASK} of {image_layer.name}: {warning}")
        labels, kwargs, _kind = layers.labels_layer_data(  # napari's 'index' column first
            result.labels, result.features, image_name=image_key(image_layer),
            image_layer=image_layer.name, subject=subject, scale=image_layer.scale,
            translate=image_layer.translate,
            metadata={nm.META_METHOD: method, "params": params, "warning": warning})
        name = kwargs.pop("name")
        if name in self.viewer.layers and isinstance(self.viewer.layers[name], Labels):
            out = self.viewer.layers[name]
            grey_not_counted(out, False)  # its own colors back before its metadata goes
            out.metadata = kwargs["metadata"]  # a new segmentation invalidates old embeddings
            out.data = labels
            out.features = kwargs["features"]
        else:
            out = self.viewer.add_labels(labels, name=name, **kwargs)
        follower = follow(self.viewer, out)
        if follower is not None:  # these pixels and rows are where hand corrections start
            follower.reset()
        self.counted_label.setText(f"{image_layer.name}: {counted_summary(out.features)} "
                                   "(the others are greyed; hover one for the reason)")
        grey_not_counted(out, session_for(self.viewer).counted_only)
        return out

    # -- teaching cellpose -----------------------------------------------------------
    def train_from_corrections(self, *_: Any) -> None:
        """Fine-tune the model in the model field on every corrected Labels layer; the new
        weights file becomes the model field's value (segment.finetune)."""
        smears = [(image, np.asarray(layer.data)) for layer, image in self._corrected_layers()]
        if len(smears) < 2:
            notify_error("Training", ValueError(
                f"{len(smears)} smear(s) corrected by hand: training needs at least 2 (one is "
                "held back to score the model); correct cells of more smears first"))
            return
        folder = QFileDialog.getExistingDirectory(self, "Folder for the trained model")
        if not folder:
            return
        from napari_reddino.segment.finetune import iter_finetune_cellpose

        base, epochs, gpu = self.cp_model.value, self.epochs.value, GPU_CHOICES[self.gpu.value]

        def job(cancel: Any) -> Any:
            return (yield from iter_finetune_cellpose(
                [image for image, _l in smears], [labels for _i, labels in smears], folder,
                base_model=base, n_epochs=epochs, gpu=gpu, cancel=cancel))

        def on_result(result: Any) -> None:
            self.cp_model.value = str(result.model_path)
            self.method.value = "cellpose"
            self.corrections.status.setText(result.summary())  # the runner says "done"

        self.train_runner.start(job, on_result, task="Training")

    def _corrected_layers(self) -> list:
        out = []
        for layer in self.viewer.layers:
            if not isinstance(layer, Labels) or not layer.metadata.get(nm.META_CORRECTED):
                continue
            name = layer.metadata.get(nm.META_IMAGE_LAYER)
            image = next((other for other in self.viewer.layers if other.name == name), None)
            if image is not None:
                out.append((layer, np.asarray(layer_image(image))))
        return out
