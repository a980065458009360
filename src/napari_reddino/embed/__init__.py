"""Backbone features of a smear: the backbone registry (timm ``hf-hub:`` / ``local-dir:`` / bundled,
DinoBloom ``.pth`` conversion, which backbones to offer), patch-token grids, the PCA-3 RGB overlay,
the finer overlay grid and one vector per cell (pooled from a crop or the grid under the mask).

May import ``io``; never ``explore``, ``label`` or anything napari.
"""
