"""Synthetic smears with truth: drawn red-cell morphologies, white cells, platelets and parasites
(:mod:`.cells`), per-subject stain and optics (:mod:`.style`), whole smears (:mod:`.smear`).

A leaf: imports nothing of the package but :mod:`napari_reddino.names`.
"""
