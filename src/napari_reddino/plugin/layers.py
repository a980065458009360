"""Cell tables to napari layer data: the one place the docks' layer contract is built (no Qt).

The contract every dock reads (see docs/architecture.md), for one smear named ``<name>``:

- Image ``<name>``, ``metadata = {"image": <image key>, "subject": ...}``.
- Labels ``<name> labels``: ``features`` = the smear's cell table, napari's ``index`` column
  (= label value) first, then ``label``, ``not_counted_reason``, ``counted`` (napari's status
  bar shows the hovered object's reason), ``embedding_row`` pointing into
  ``metadata["reddino_embeddings"]`` (a ``cells.CellEmbeddings``); ``metadata`` also holds
  ``image``, ``subject``, ``image_layer``.
- Image ``<name> RedDino PCA``: an overlay placed over the image, made only when asked (the
  embedding dock's cell colours, or the patch-token PCA from a run's grid); never on opening.

Functions return napari ``LayerDataTuple`` s ``(data, kwargs, type)``, which readers return
as they are and ``viewer._add_layer_from_data`` / :func:`add_layers` turn into layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from napari_reddino import names as nm
from napari_reddino.embed.overlay import grid_mask, overlay_transform, pca_rgb
from napari_reddino.segment.counted import add_counted

LayerData = tuple  # (data, kwargs, layer_type)


def labels_name(image_layer: str) -> str:
    return f"{image_layer} labels"


def overlay_name(image_layer: str) -> str:
    return f"{image_layer} RedDino PCA"


def cell_colours_data(
    rgba: np.ndarray, *, image_layer: str, scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None, opacity: float = 0.85, visible: bool = True,
    metadata: dict | None = None,
) -> LayerData:
    """One flat colour per cell (uint8 RGBA on the Labels layer's pixels, glass transparent),
    named and tagged like the patch overlay: it covers the smear ``image_layer`` names."""
    kwargs = {
        "name": overlay_name(image_layer), "rgb": True, "opacity": opacity, "visible": visible,
        "contrast_limits": (0, 255), "scale": scale, "translate": translate,
        "metadata": {nm.META_IMAGE_LAYER: image_layer, **(metadata or {})},
    }
    return np.asarray(rgba, dtype=np.uint8), kwargs, "image"


def smear_cells(table: pd.DataFrame, embeddings=None, image_name: str | None = None):
    """One smear's rows of a (combined) table, and its own embeddings with ``embedding_row``
    renumbered to point into them; ``(table, None)`` without embeddings."""
    from napari_reddino.io.cell_table import CellEmbeddings

    if image_name is not None and nm.IMAGE in table.columns:
        table = table[table[nm.IMAGE].astype(str) == str(image_name)]
    table = table.reset_index(drop=True)
    if embeddings is None:
        return table.drop(columns=[nm.EMBEDDING_ROW], errors="ignore"), None
    if nm.EMBEDDING_ROW in table.columns:
        rows = table[nm.EMBEDDING_ROW].to_numpy(dtype=np.int64)
    else:
        images = table[nm.IMAGE] if nm.IMAGE in table.columns else image_name
        rows = embeddings.rows_for(images, table[nm.LABEL].to_numpy())
    keep = rows >= 0
    table, rows = table[keep].reset_index(drop=True), rows[keep]
    own = CellEmbeddings(embeddings.vectors[rows], embeddings.image[rows],
                         embeddings.label[rows], embeddings.backbone, embeddings.pooling)
    table[nm.EMBEDDING_ROW] = np.arange(len(table), dtype=np.int64)
    return table, own


def layer_features(table: pd.DataFrame) -> pd.DataFrame:
    """A Labels layer's ``features``: napari's ``index`` first, then what the status bar shows
    first on hover (label, why it is not counted), ``counted`` recomputed."""
    features = add_counted(table.drop(columns=[nm.NAPARI_INDEX], errors="ignore"))
    first = [nm.LABEL, nm.NOT_COUNTED_REASON, nm.COUNTED]  # read first in napari's status bar
    features = features[first + [c for c in features.columns if c not in first]]
    features.insert(0, nm.NAPARI_INDEX, features[nm.LABEL].to_numpy(dtype=np.int64))
    return features.reset_index(drop=True)


def labels_layer_data(
    labels: np.ndarray, table: pd.DataFrame, embeddings=None, *, image_name: str,
    image_layer: str, subject: str = "unknown", scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None, metadata: dict | None = None,
) -> LayerData:
    """The Labels layer of one smear: features = its cells (``index`` first), embeddings
    attached. ``table`` and ``embeddings`` may span many smears."""
    table, own = smear_cells(table, embeddings, image_name)
    features = layer_features(table)
    meta = {nm.META_IMAGE: str(image_name), nm.META_SUBJECT: str(subject),
            nm.META_IMAGE_LAYER: image_layer, **(metadata or {})}
    if own is not None:
        meta[nm.EMBEDDINGS_KEY] = own
    kwargs = {"name": labels_name(image_layer), "features": features, "metadata": meta}
    kwargs.update(_placement(scale, translate))
    return np.asarray(labels), kwargs, "labels"


def overlay_layer_data(
    grid: np.ndarray, patch_size: int, *, image_layer: str, labels: np.ndarray | None = None,
    scale: Sequence[float] | None = None, translate: Sequence[float] | None = None,
    backbone: str = "", opacity: float = 0.5, visible: bool = False,
) -> LayerData:
    """The PCA overlay of a patch-token grid, fitted on the cells' tokens when ``labels`` has
    enough of them, placed over an image layer shown with ``scale`` / ``translate``."""
    cells = None if labels is None else grid_mask(np.asarray(labels) > 0, patch_size)
    rgb = pca_rgb(grid, cells if cells is not None and cells.sum() >= 3 else None)
    grid_scale, grid_shift = overlay_transform(int(patch_size))
    return overlay_rgb_data(rgb, grid_scale, grid_shift, image_layer=image_layer, scale=scale,
                            translate=translate, backbone=backbone, opacity=opacity,
                            visible=visible)


def overlay_rgb_data(
    rgb: np.ndarray, grid_scale: Sequence[float], grid_shift: Sequence[float], *,
    image_layer: str, scale: Sequence[float] | None = None,
    translate: Sequence[float] | None = None, backbone: str = "", opacity: float = 0.5,
    visible: bool = True,
) -> LayerData:
    """An overlay already colored (``rgb`` over a grid placed at ``grid_scale`` /
    ``grid_shift`` in image pixels), placed over an image layer shown with ``scale`` /
    ``translate``: the readers' and the embedding dock's overlays land alike."""
    image_scale = np.ones(2) if scale is None else np.asarray(scale, float)[-2:]
    image_shift = np.zeros(2) if translate is None else np.asarray(translate, float)[-2:]
    kwargs = {
        "name": overlay_name(image_layer), "rgb": True, "opacity": opacity,
        "visible": visible, "blending": "translucent", "contrast_limits": (0.0, 1.0),
        "scale": tuple(image_scale * np.asarray(grid_scale, float)),
        "translate": tuple(image_shift + image_scale * np.asarray(grid_shift, float)),
        "metadata": {nm.META_IMAGE_LAYER: image_layer, nm.META_BACKBONE: backbone},
    }
    return np.asarray(rgb, dtype=np.float32), kwargs, "image"


def image_layer_data(
    image: np.ndarray, *, name: str, image_name: str, subject: str = "unknown",
    scale: Sequence[float] | None = None, metadata: dict | None = None,
) -> LayerData:
    """The smear photo as an RGB Image layer keyed by ``image_name``."""
    image = np.asarray(image)
    kwargs = {"name": name, "rgb": image.ndim == 3 and image.shape[-1] in (3, 4),
              "metadata": {nm.META_IMAGE: str(image_name), nm.META_SUBJECT: str(subject),
                           **(metadata or {})}}
    kwargs.update(_placement(scale, None))
    return image, kwargs, "image"


def _placement(scale, translate) -> dict:
    out = {}
    if scale is not None:
        out["scale"] = tuple(float(s) for s in scale)[-2:]
    if translate is not None:
        out["translate"] = tuple(float(t) for t in translate)[-2:]
    return out


def add_layers(viewer, layer_data: Sequence[LayerData]) -> list:
    """Add layer-data tuples to a viewer through its public ``add_<type>`` methods."""
    added = []
    for data, kwargs, layer_type in layer_data:
        added.append(getattr(viewer, f"add_{layer_type}")(data, **kwargs))
    return added


# -- which smear a layer belongs to --------------------------------------------------------------
OVERLAY_OF = "reddino_overlay_of"  # a dock's overlay: (role, source layer name), _linking's tag


def smear_of(layer, by_name: dict) -> str | None:
    """The smear ``layer`` shows: the name of its smear's Image layer (None: not a smear's).

    Read from the contract above: an overlay follows its source layer, a Labels or overlay
    layer names its ``image_layer``, an Image layer keyed by an ``image`` is its own smear, and
    a layer with only an ``image`` key (a selection made a layer) goes with that image's layer.
    """
    metadata = getattr(layer, "metadata", None) or {}
    tag = metadata.get(OVERLAY_OF)
    if tag is not None:
        source = by_name.get(str(tuple(tag)[-1]))
        return None if source is None or source is layer else smear_of(source, by_name)
    if metadata.get(nm.META_IMAGE_LAYER):
        return str(metadata[nm.META_IMAGE_LAYER])
    image = metadata.get(nm.META_IMAGE)
    if image is None:
        return None
    if layer.__class__.__name__ == "Image":
        return layer.name
    for other in by_name.values():
        if (other.__class__.__name__ == "Image"
                and str((other.metadata or {}).get(nm.META_IMAGE)) == str(image)):
            return other.name
    return str(image)


def smear_groups(layers) -> dict[str, list]:
    """``{smear: its layers}`` in layer-list order, smears in the order they first appear."""
    layers = list(layers)
    by_name = {layer.name: layer for layer in layers}
    smears = [smear_of(layer, by_name) for layer in layers]
    named = set(smears)  # an image layer without metadata is the smear its cells name
    groups: dict[str, list] = {}
    for layer, smear in zip(layers, smears, strict=True):
        smear = smear if smear is not None or layer.name not in named else layer.name
        if smear is not None:
            groups.setdefault(smear, []).append(layer)
    return groups


def is_overlay(layer) -> bool:
    """An overlay drawn over a smear (selection rings, class colors, the PCA images: an Image
    layer naming the ``image_layer`` it lies on), not the smear's own image or cells."""
    metadata = getattr(layer, "metadata", None) or {}
    return OVERLAY_OF in metadata or (layer.__class__.__name__ == "Image"
                                      and bool(metadata.get(nm.META_IMAGE_LAYER)))
