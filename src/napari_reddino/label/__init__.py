"""Classes of cells: class sets, k-NN and classifier propagation with confidence and review order,
which cells to label first, label files keyed by (image, label, centroid) and the autosave journal.

May import ``io``, ``morphology`` and ``explore``.
"""
