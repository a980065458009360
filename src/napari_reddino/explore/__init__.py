"""Comparing cells: feature spaces (embedding / standardized morphology / both), one neighbor graph
per matrix, the 2-D map (UMAP layout, PCA, t-SNE), clusters, batch effects per subject, and
:mod:`.analysis`, which runs them with one set of settings for the explorer and the CLI.

May import ``io``, ``morphology`` and ``embed``.
"""
