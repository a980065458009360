"""Comparing cells: feature spaces (embedding / standardised morphology / both), one neighbour graph
per matrix, the 2-D map (UMAP layout, PCA, t-SNE), clusters, batch effects per subject, and
:mod:`.analysis`, which runs them with one set of settings for the explorer and the CLI.

May import ``io``, ``morphology`` and ``embed``.
"""
