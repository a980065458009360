"""Segmentation of a smear into cells: the classical RBC backend, Cellpose, lazy smears tile by
tile, each object's kind (rbc / wbc / platelet / other), plausibility checks and metrics against
truth.

Entry point: :func:`napari_reddino.segment.dispatch.segment`. May import ``io``.
"""
